package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/cofferhq/coffer/internal/relay/fieldpath"
)

func decodeStd(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json refuses %q: %v", b, err)
	}
	return v
}

func TestJSONRoundTrip(t *testing.T) {
	in := `{"b":1,"a":[true,null,"x\u003c\"y",{"z":-1.5e3}],"s":"é"}`
	n, err := parseJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	n.encode(&b)
	if want := `{"b":1,"a":[true,null,"x<\"y",{"z":-1.5e3}],"s":"é"}`; b.String() != want {
		t.Fatalf("encode = %s, want %s (order and literals kept)", b.String(), want)
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":1,"A":2}`, `{} {}`, `{"a":`, `[1,]`, "\ufeff{}"} {
		if _, err := parseJSON([]byte(bad)); err == nil {
			t.Errorf("parseJSON(%q) accepted", bad)
		}
	}
	if _, err := parseJSON([]byte(`{"a":1,"A":2}`)); !errors.Is(err, errDuplicate) {
		t.Errorf("case duplicate: %v", err)
	}
}

func TestCollect(t *testing.T) {
	n, err := parseJSON([]byte(`{"items":[{"card":"1"},{"Card":"2"},{"card":null},{"x":1},{"card":3}],"card":{"number":"4"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var sites []site
	p, _ := fieldpath.Parse("items[*].card")
	collect(n, p, 0, &sites)
	if len(sites) != 3 || sites[0].value != "1" || sites[1].value != "2" || sites[2].kind != 'l' {
		t.Fatalf("sites = %+v", sites)
	}
	sites[0].set("t1")
	var b bytes.Buffer
	n.encode(&b)
	if want := `{"items":[{"card":"t1"},{"Card":"2"},{"card":null},{"x":1},{"card":3}],"card":{"number":"4"}}`; b.String() != want {
		t.Fatalf("encode = %s", b.String())
	}
}

func TestForm(t *testing.T) {
	f, err := parseForm("a=1&card%5Bnumber%5D=4111+1111&&b=%C3%A9")
	if err != nil {
		t.Fatal(err)
	}
	var sites []site
	p, _ := fieldpath.Parse("card.number")
	collectForm(f, p, 0, &sites)
	if len(sites) != 1 || sites[0].value != "4111 1111" {
		t.Fatalf("sites = %+v", sites)
	}
	sites[0].set("tok")
	if got := f.encode(); got != "a=1&card%5Bnumber%5D=tok&b=%C3%A9" {
		t.Fatalf("encode = %s", got)
	}
	for _, bad := range []string{"a=1;b=2", "a=%zz", "%zz=1"} {
		if _, err := parseForm(bad); err == nil {
			t.Errorf("parseForm(%q) accepted", bad)
		}
	}
}

// FuzzJSON: what the relay parses, encoding/json reads the same way (no
// member the relay missed or read otherwise), and encoding is stable.
func FuzzJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"card":{"number":"4111"}}`, `[{"x":[1,2,{"y":null}]}]`, `"\u00e9"`, `{"a":"\ud800"}`, `{"A":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseJSON(b)
		if err != nil {
			return
		}
		var out bytes.Buffer
		n.encode(&out)
		if !reflect.DeepEqual(decodeStd(t, b), decodeStd(t, out.Bytes())) {
			t.Fatalf("%q re-encodes as %q, which means something else", b, out.Bytes())
		}
		n2, err := parseJSON(out.Bytes())
		if err != nil {
			t.Fatalf("re-encoding %q does not parse: %v", out.Bytes(), err)
		}
		var again bytes.Buffer
		n2.encode(&again)
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("encoding is not stable: %q then %q", out.Bytes(), again.Bytes())
		}
	})
}

// FuzzForm: parse, encode and parse again give the same pairs.
func FuzzForm(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "card%5Bnumber%5D=4111", "a=%20+b", "=x&y=", "k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := parseForm(s)
		if err != nil {
			return
		}
		fm2, err := parseForm(fm.encode())
		if err != nil {
			t.Fatalf("%q re-encodes as %q, which does not parse: %v", s, fm.encode(), err)
		}
		if len(fm.pairs) != len(fm2.pairs) {
			t.Fatalf("%q: %d pairs, then %d", s, len(fm.pairs), len(fm2.pairs))
		}
		for i := range fm.pairs {
			if fm.pairs[i].key != fm2.pairs[i].key || fm.pairs[i].value != fm2.pairs[i].value {
				t.Fatalf("%q: pair %d changed", s, i)
			}
		}
	})
}
