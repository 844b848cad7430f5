package console

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

type collectionInfo struct {
	Name   string         `json:"name"`
	Fields []coffer.Field `json:"fields"`
}

// recordView is a record as GET or search answers it: only the fields
// the caller's policy shows, masked where it says so.
type recordView struct {
	ID        string                     `json:"id"`
	Owner     string                     `json:"owner"`
	Subject   string                     `json:"subject"`
	CreatedAt time.Time                  `json:"created_at"`
	Data      map[string]json.RawMessage `json:"data"`
}

// shownField is one schema field of a record as shown: its value, or
// that the policy left it out.
type shownField struct {
	Name   string
	Type   string
	Value  string
	Hidden bool
}

type shownRecord struct {
	ID, Owner, Subject string
	CreatedAt          time.Time
	Fields             []shownField
}

type recordsData struct {
	Collections []collectionInfo
	Collection  *collectionInfo
	Name        string
	Searchable  []string
	ID          string
	Field       string
	Records     []shownRecord
	Searched    bool
	Erased      *eraseResult
}

type eraseResult struct {
	Subject        string
	RecordsDeleted int
}

func shape(col *collectionInfo, rv recordView) shownRecord {
	sr := shownRecord{ID: rv.ID, Owner: rv.Owner, Subject: rv.Subject, CreatedAt: rv.CreatedAt}
	for _, f := range col.Fields {
		raw, ok := rv.Data[f.Name]
		v := string(raw)
		var str string
		if json.Unmarshal(raw, &str) == nil {
			v = str
		}
		sr.Fields = append(sr.Fields, shownField{Name: f.Name, Type: f.Type, Value: v, Hidden: !ok})
	}
	return sr
}

// loadCollections fills d with the collections the caller may list
// (admin on collections/*; others type the name) and the schema of the
// one named c (read on it).
func (con *Console) loadCollections(r *http.Request, s *session, d *recordsData, c string) *Problem {
	res := con.callJSON(r, s, http.MethodGet, "/v1/collections", nil)
	switch p := res.problem(); {
	case p == nil:
		var out struct {
			Collections []collectionInfo `json:"collections"`
		}
		if err := res.decode(&out); err == nil {
			d.Collections = out.Collections
		}
		if c == "" && len(d.Collections) > 0 {
			c = d.Collections[0].Name
		}
	case p.Status == http.StatusForbidden:
		// Not allowed to list them: the user names the collection.
	default:
		return p
	}
	d.Name = strings.TrimSpace(c)
	if d.Name == "" {
		return nil
	}
	res = con.callJSON(r, s, http.MethodGet, apiPath("collections", d.Name), nil)
	if p := res.problem(); p != nil {
		return p
	}
	var col collectionInfo
	if err := res.decode(&col); err != nil {
		return &Problem{Status: 502, Detail: "the answer could not be read"}
	}
	d.Collection = &col
	for _, f := range col.Fields {
		if f.Searchable {
			d.Searchable = append(d.Searchable, f.Name)
		}
	}
	return nil
}

func (con *Console) recordsPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := &recordsData{ID: strings.TrimSpace(q.Get("id"))}
	pg := page{Title: "Records", Nav: "records", Data: d}
	if p := con.loadCollections(r, s, d, q.Get("c")); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "records", pg)
		return
	}
	status := http.StatusOK
	if d.ID != "" && d.Collection != nil {
		d.Searched = true
		res := con.callJSON(r, s, http.MethodGet, apiPath("collections", d.Collection.Name, "records", d.ID), nil)
		if p := res.problem(); p != nil {
			pg.Error, status = p, p.Status
		} else {
			var rv recordView
			if err := res.decode(&rv); err == nil {
				d.Records = append(d.Records, shape(d.Collection, rv))
			}
		}
	}
	con.render(w, r, s, status, "records", pg)
}

// recordsSearch looks records up by a searchable field. It is a POST so
// that the value looked for stays out of URLs, histories and logs.
func (con *Console) recordsSearch(w http.ResponseWriter, r *http.Request, s *session) {
	d := &recordsData{Field: r.PostFormValue("field"), Searched: true}
	pg := page{Title: "Records", Nav: "records", Data: d}
	if p := con.loadCollections(r, s, d, r.PostFormValue("c")); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "records", pg)
		return
	}
	if d.Collection == nil {
		pg.Error = &Problem{Status: 404, Detail: "no such collection"}
		con.render(w, r, s, http.StatusNotFound, "records", pg)
		return
	}
	body := map[string]any{"where": map[string]string{d.Field: r.PostFormValue("value")}, "limit": 50}
	res := con.callJSON(r, s, http.MethodPost, apiPath("collections", d.Collection.Name, "records", "search"), body)
	if p := res.problem(); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "records", pg)
		return
	}
	var out struct {
		Records []recordView `json:"records"`
	}
	if err := res.decode(&out); err != nil {
		pg.Error = &Problem{Status: 502, Detail: "the answer could not be read"}
	}
	for _, rv := range out.Records {
		d.Records = append(d.Records, shape(d.Collection, rv))
	}
	con.render(w, r, s, http.StatusOK, "records", pg)
}

// eraseSubject crypto-shreds a data subject: the subject typed twice (the
// second time as the confirmation), and a recent sign-in.
func (con *Console) eraseSubject(w http.ResponseWriter, r *http.Request, s *session) {
	subject := strings.TrimSpace(r.PostFormValue("subject"))
	d := &recordsData{}
	pg := page{Title: "Records", Nav: "records", Data: d}
	if p := con.loadCollections(r, s, d, ""); p != nil && p.Status == http.StatusUnauthorized {
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
		return
	}
	if subject == "" || r.PostFormValue("confirm") != subject {
		pg.Error = &Problem{Status: 422, Detail: "Type the subject's id exactly in the confirmation box to erase it."}
		con.render(w, r, s, http.StatusUnprocessableEntity, "records", pg)
		return
	}
	if !con.fresh(w, r, s, Prefix+"records") {
		return
	}
	res := con.callJSON(r, s, http.MethodDelete, apiPath("subjects", subject), nil)
	if p := res.problem(); p != nil {
		pg.Error = p
		con.render(w, r, s, p.Status, "records", pg)
		return
	}
	var out struct {
		RecordsDeleted int `json:"records_deleted"`
	}
	_ = res.decode(&out)
	d.Erased = &eraseResult{Subject: subject, RecordsDeleted: out.RecordsDeleted}
	con.render(w, r, s, http.StatusOK, "records", pg)
}
