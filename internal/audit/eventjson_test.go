package audit

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// reflectJSON is the encoding MarshalJSON writes by hand, made by
// encoding/json's reflection: the two must decode to the same JSON value.
func reflectJSON(t *testing.T, e Event) []byte {
	t.Helper()
	j := eventJSON(e)
	j.KeyVersion = EffectiveVersion(j.KeyVersion) // written as the version it stands for
	for _, l := range []*[]string{&j.Roles, &j.Fields, &j.ValueHMACs, &j.Targets} {
		if *l == nil {
			*l = []string{}
		}
	}
	b, err := json.Marshal(struct {
		eventJSON
		Principal string `json:"principal"`
	}{j, e.PrincipalID})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randString(r *rand.Rand) string {
	alphabet := []rune("aZ09 _-:/.\"\\<>&'\n\t\x00\x1f\u2028\u00e9\U0001F600")
	n := r.IntN(12)
	out := make([]rune, n)
	for i := range out {
		out[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(out)
}

func randStrings(r *rand.Rand) []string {
	switch r.IntN(3) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	out := make([]string, 1+r.IntN(3))
	for i := range out {
		out[i] = randString(r)
	}
	return out
}

func TestMarshalJSONMatchesReflection(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		e := Event{
			ID: randString(r), Seq: r.Uint64(), Node: randString(r),
			Time:      time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).UTC().Truncate(time.Microsecond),
			RequestID: randString(r), PrincipalID: randString(r), PrincipalKind: randString(r),
			Roles: randStrings(r), SourceIP: randString(r), Action: randString(r), Resource: randString(r),
			Fields: randStrings(r), Decision: randString(r), Rule: randString(r), Reason: randString(r),
			Status: r.IntN(600) - 1, Count: r.Int() - r.Int(), ValueHMACs: randStrings(r),
			PrevHash: randString(r), Hash: randString(r), KeyVersion: r.Uint32N(4), Targets: randStrings(r),
		}
		if i%7 == 0 {
			e.Time = time.Time{}
		}
		got, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("event %d: MarshalJSON wrote invalid JSON %q: %v", i, got, err)
		}
		if err := json.Unmarshal(reflectJSON(t, e), &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("event %d:\n hand %s\n want %s", i, got, reflectJSON(t, e))
		}
		var back Event
		if err := back.UnmarshalJSON(got); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if h1, h2 := Canonical(nil, &e), Canonical(nil, &back); string(h1) != string(h2) {
			t.Fatalf("event %d does not round-trip: %+v vs %+v", i, e, back)
		}
	}
}

func TestMarshalJSONRefusesYearsJSONCannotHold(t *testing.T) {
	e := Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := e.MarshalJSON(); err == nil {
		t.Fatal("year 10000 encoded")
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	e := Event{ID: "node-1:42", Seq: 42, Node: "node-1", Time: time.Now().UTC(), RequestID: "01JABCDEF",
		PrincipalID: "cl_0123456789", PrincipalKind: "client", Roles: []string{"admin"}, SourceIP: "127.0.0.1",
		Action: "read", Resource: "collections/customers", Fields: []string{"name", "email", "card_number", "ssn"},
		Decision: "allow", Rule: "role:admin", Status: 200, Count: 1,
		PrevHash: "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069",
		Hash:     "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}
