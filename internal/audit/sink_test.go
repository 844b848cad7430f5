package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestECSLineHasTheECSFields(t *testing.T) {
	e := sampleEvent(1)
	e.ID, e.Seq, e.Node, e.Time = "n1:5", 5, "n1", time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	e.PrevHash, e.Hash, e.Decision, e.Reason, e.Status = Genesis("a"), Genesis("b"), DecisionDeny, "no rule", 403
	line, err := AppendECS(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"@timestamp":                "2024-05-01T12:00:00.123456Z",
		"event.action":              "read",
		"event.outcome":             "failure",
		"event.id":                  "n1:5",
		"event.sequence":            float64(5),
		"event.reason":              "no rule",
		"user.id":                   e.PrincipalID,
		"user.roles":                []any{"support"},
		"source.ip":                 "192.0.2.10",
		"http.response.status_code": float64(403),
		"trace.id":                  e.RequestID,
		"labels.resource":           "collections/customers",
		"labels.rule":               "support#0",
		"coffer.hash":               e.Hash,
		"coffer.prev_hash":          e.PrevHash,
		"host.name":                 "n1",
	}
	for path, v := range want {
		got := lookup(m, path)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(v)
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s = %s, want %s", path, gb, wb)
		}
	}
}

// lookup follows a dotted ECS path through nested objects.
func lookup(m map[string]any, path string) any {
	if v, ok := m[path]; ok {
		return v
	}
	head, rest, ok := strings.Cut(path, ".")
	if !ok {
		return nil
	}
	sub, _ := m[head].(map[string]any)
	if sub == nil {
		return nil
	}
	return lookup(sub, rest)
}

func TestOutcome(t *testing.T) {
	for _, tt := range []struct {
		decision string
		status   int
		want     string
	}{
		{DecisionAllow, 200, "success"},
		{DecisionDeny, 403, "failure"},
		{"", 401, "failure"},
		{DecisionAllow, 503, "failure"},
		{"", 200, "success"},
	} {
		if got := Outcome(&Event{Decision: tt.decision, Status: tt.status}); got != tt.want {
			t.Errorf("Outcome(%q, %d) = %q, want %q", tt.decision, tt.status, got, tt.want)
		}
	}
}

// writeFileLog writes n events through a writer with a rotating file sink
// and returns the sink's path.
func writeFileLog(t *testing.T, n int, maxBytes int64) (string, *memStore) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := NewJSONLFile(path, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 10, RequiredSinks: []Sink{sink}})
	logN(t, w, n)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path, st
}

func TestJSONLFileRotatesAndVerifies(t *testing.T) {
	path, _ := writeFileLog(t, 200, 8<<10)
	files, err := LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 || files[0] != path+".1" || files[len(files)-1] != path {
		t.Fatalf("LogFiles = %v, want several rotated files then the current one", files)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", st.Mode().Perm())
	}
	rep, err := VerifyFile(context.Background(), testLookup, files...)
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoints every 10 events, and the final one on Close is at 200 too.
	if want := (Report{Nodes: 1, Events: 200, Checkpoints: 20}); rep != want {
		t.Fatalf("report = %+v, want %+v", rep, want)
	}
}

func TestVerifyFileDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(lines []string) []string
		wantSeq uint64
		wantMsg string
	}{
		{
			name: "fail/edited line names the event",
			tamper: func(lines []string) []string {
				lines[lineOf(lines, 7)] = strings.Replace(lines[lineOf(lines, 7)], `"action":"read"`, `"action":"search"`, 1)
				return lines
			},
			wantSeq: 7, wantMsg: "edited",
		},
		{
			name: "fail/deleted line names the missing seq",
			tamper: func(lines []string) []string {
				i := lineOf(lines, 13)
				return append(lines[:i:i], lines[i+1:]...)
			},
			wantSeq: 13, wantMsg: "missing",
		},
		{
			name: "fail/swapped lines name the first position",
			tamper: func(lines []string) []string {
				i, j := lineOf(lines, 3), lineOf(lines, 4)
				lines[i], lines[j] = lines[j], lines[i]
				return lines
			},
			wantSeq: 3, wantMsg: "reordered",
		},
		{
			name: "fail/duplicated line names the duplicate",
			tamper: func(lines []string) []string {
				i := lineOf(lines, 5)
				return append(lines[:i+1:i+1], lines[i:]...)
			},
			wantSeq: 6, wantMsg: "again",
		},
		{
			name: "fail/events cut but a checkpoint left names the first missing seq",
			tamper: func(lines []string) []string {
				i, j := lineOf(lines, 25), lineOf(lines, 30)
				return append(lines[:i:i], lines[j+1:]...) // the checkpoint at 30 stays
			},
			wantSeq: 25, wantMsg: "cut off",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := writeFileLog(t, 30, -1)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := tt.tamper(strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n"))
			out := strings.Join(lines, "")
			if !strings.HasSuffix(out, "\n") {
				out += "\n"
			}
			if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = VerifyFile(context.Background(), testLookup, path)
			var verr *VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("VerifyFile = %v, want a *VerifyError", err)
			}
			if verr.Seq != tt.wantSeq || !strings.Contains(verr.Reason, tt.wantMsg) {
				t.Fatalf("VerifyFile named seq %d (%s), want seq %d (%s)", verr.Seq, verr.Reason, tt.wantSeq, tt.wantMsg)
			}
		})
	}
}

// lineOf returns the index of the event line with seq.
func lineOf(lines []string, seq uint64) int {
	for i, l := range lines {
		e, _, err := ParseECS([]byte(l))
		if err == nil && e != nil && e.Seq == seq {
			return i
		}
	}
	panic("no such line")
}

func TestLogFilesRefusesAGap(t *testing.T) {
	path, _ := writeFileLog(t, 200, 8<<10)
	if err := os.Remove(path + ".2"); err != nil {
		t.Fatal(err)
	}
	if _, err := LogFiles(path); err == nil {
		t.Fatal("LogFiles accepted a missing rotated file")
	}
}

func TestVerifyFileRefusesAStartAfterSeqOne(t *testing.T) {
	path, _ := writeFileLog(t, 200, 8<<10)
	files, err := LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyFile(context.Background(), testLookup, files[1:]...)
	var verr *VerifyError
	if !errors.As(err, &verr) || verr.Seq != 1 {
		t.Fatalf("VerifyFile without the first file = %v, want seq 1 missing", err)
	}
}

func TestVerifyFileRefusesForeignLines(t *testing.T) {
	path, _ := writeFileLog(t, 3, -1)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"msg":"hello"}` + "\n")
	_ = f.Close()
	if _, err := VerifyFile(context.Background(), testLookup, path); err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("VerifyFile = %v, want an error naming line 5", err)
	}
}

func TestJSONLFileCutsATornLastLine(t *testing.T) {
	path, st := writeFileLog(t, 5, -1)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"@timestamp":"2024-`)
	_ = f.Close()
	if _, err := VerifyFile(context.Background(), testLookup, path); err == nil {
		t.Fatal("VerifyFile accepted a torn last line")
	}
	sink, err := NewJSONLFile(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, st, WriterConfig{Sinks: []Sink{sink}})
	logN(t, w, 2)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), testLookup, path)
	if err != nil || rep.Events != 7 {
		t.Fatalf("VerifyFile after reopening = %+v, %v; want 7 events", rep, err)
	}
}

func TestWriterBackfillsAFileSinkFromTheStore(t *testing.T) {
	st := buildLog(t, 40, 10, "n1")
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := NewJSONLFile(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 10, Sinks: []Sink{sink}})
	logN(t, w, 3)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), testLookup, path)
	if err != nil || rep.Events != 43 {
		t.Fatalf("VerifyFile = %+v, %v; want all 43 events from seq 1", rep, err)
	}
	if pos, err := sink.Position("n1"); err != nil || pos != 43 {
		t.Fatalf("Position = %d, %v; want 43", pos, err)
	}
}

func TestStreamSinkWritesLines(t *testing.T) {
	var buf bytes.Buffer
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{Sinks: []Sink{NewStream(&buf)}})
	logN(t, w, 4)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stdout.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), testLookup, path)
	if err != nil || rep.Events != 4 || rep.Checkpoints != 1 {
		t.Fatalf("VerifyFile(stream output) = %+v, %v", rep, err)
	}
}

func FuzzParseECS(f *testing.F) {
	e := sampleEvent(1)
	e.ID, e.Seq, e.Node, e.Time, e.PrevHash, e.Hash = "n1:1", 1, "n1", time.Unix(1714564800, 123456000).UTC(), Genesis("n1"), Genesis("n2")
	line, _ := AppendECS(nil, &e)
	f.Add(line)
	c := Checkpoint{Node: "n1", Seq: 1, Hash: e.Hash, Time: e.Time}
	SignCheckpoint(testSignKey, &c)
	cline, _ := appendCheckpointECS(nil, &c)
	f.Add(cline)
	f.Add([]byte(`{"@timestamp":"2024-01-01T00:00:00Z","event":{"dataset":"coffer.audit","kind":"event","action":"","sequence":0},"ecs":{"version":"x"},"host":{"name":""},"coffer":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e1, c1, err := ParseECS(data)
		if err != nil {
			return
		}
		var out []byte
		if e1 != nil {
			out, err = AppendECS(nil, e1)
		} else {
			out, err = appendCheckpointECS(nil, c1)
		}
		if err != nil {
			t.Fatalf("re-encoding a parsed line failed: %v", err)
		}
		e2, c2, err := ParseECS(out)
		if err != nil {
			t.Fatalf("parsing our own line failed: %v\n%s", err, out)
		}
		switch {
		case e1 != nil:
			if e2 == nil || !bytes.Equal(Canonical(nil, e1), Canonical(nil, e2)) || e1.Hash != e2.Hash {
				t.Fatalf("event changed in a round trip:\n%s", out)
			}
		default:
			if c2 == nil || !bytes.Equal(CheckpointMessage(c1), CheckpointMessage(c2)) || !bytes.Equal(c1.Signature, c2.Signature) {
				t.Fatalf("checkpoint changed in a round trip:\n%s", out)
			}
		}
	})
}

// FuzzECSRoundTrip checks that every event the Writer can make (valid UTF-8,
// microsecond time) comes back from its line exactly, so that VerifyFile
// never reports an intact file as edited.
func FuzzECSRoundTrip(f *testing.F) {
	f.Add("n1", uint64(1), int64(1714564800123456), "req", "p", "client", "r1,r2", "192.0.2.1", "read",
		"collections/c", "a,b", "allow", "rule", "", 200, 1, "h1")
	f.Add("", uint64(0), int64(0), "", "", "", "", "", "", "", "", "", "", "", 0, 0, "")
	f.Fuzz(func(t *testing.T, node string, seq uint64, micros int64, req, pid, kind, roles, ip, action,
		resource, fields, decision, rule, reason string, status, count int, hmacs string) {
		if micros < 0 || micros > 253402300799999999 { // years 1970..9999
			return
		}
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, ",")
		}
		e := Event{ID: node + ":x", Seq: seq, Node: node, Time: time.UnixMicro(micros).UTC(), RequestID: req,
			PrincipalID: pid, PrincipalKind: kind, Roles: split(roles), SourceIP: ip, Action: action,
			Resource: resource, Fields: split(fields), Decision: decision, Rule: rule, Reason: reason,
			Status: status, Count: count, ValueHMACs: split(hmacs), PrevHash: "p", Hash: "h"}
		sanitize(&e)
		e.Node, e.ID = clean(e.Node), clean(e.ID)
		line, err := AppendECS(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := ParseECS(line)
		if err != nil {
			t.Fatalf("ParseECS(AppendECS(e)): %v\n%s", err, line)
		}
		if !bytes.Equal(Canonical(nil, got), Canonical(nil, &e)) || got.Hash != e.Hash {
			t.Fatalf("event changed in a round trip:\n%s", line)
		}
	})
}
