// Command go-shop is a small web shop backend that keeps its customers'
// personal data in Coffer instead of its own database: each customer is a
// Coffer record (name, email, phone, address), the card is kept only as a
// format-preserving Coffer token, and the shop's own state holds nothing
// but record ids and tokens. Its logs pass through Coffer's redacting slog
// handler, so a card number or an email that slips into a log line is
// masked on the way out. It never keeps a card number or a customer's
// personal data in its own state.
//
// Run it against a Coffer (`coffer dev` prints the values):
//
//	COFFER_URL=https://127.0.0.1:8443 COFFER_CA_FILE=.coffer-dev/tls/ca.pem \
//	SHOP_CLIENT_ID=… SHOP_CLIENT_SECRET=… go run . -listen 127.0.0.1:8080
//
// The client needs a policy like policy.yaml in this folder.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/redact"
)

// Collection is the Coffer collection the shop keeps its customers in.
const Collection = "customers"

// Schema is the collection's schema: the shop searches customers by email.
var Schema = client.Collection{Name: Collection, Fields: []client.Field{
	{Name: "name", Type: "string"},
	{Name: "email", Type: "email", Searchable: true},
	{Name: "phone", Type: "phone"},
	{Name: "address", Type: "string"},
}}

// Customer is what the shop's API takes and answers.
type Customer struct {
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Email   string `json:"email"`
	Phone   string `json:"phone,omitempty"`
	Address string `json:"address,omitempty"`
	// Card is the card number on the way in; on the way out the shop only
	// has its token, and answers its last four digits.
	Card      string `json:"card,omitempty"`
	CardLast4 string `json:"card_last4,omitempty"`
}

// account is all the shop stores itself: no personal data, only
// references into Coffer.
type account struct {
	RecordID  string
	CardToken string
}

// Shop is the service. Its zero value is not usable: see New.
type Shop struct {
	coffer *client.Client
	log    *slog.Logger

	mu       sync.Mutex
	accounts map[string]account // by record id
}

// New returns a shop that stores its customers through c and logs to log.
func New(c *client.Client, log *slog.Logger) *Shop {
	return &Shop{coffer: c, log: log, accounts: map[string]account{}}
}

// Setup creates the collection if it does not exist yet. It needs admin on
// collections/customers, which the shop's own client does not have: an
// operator runs it once (go-shop -setup, with an admin client).
func (s *Shop) Setup(ctx context.Context) error {
	if _, err := s.coffer.GetCollection(ctx, Collection); err == nil {
		return nil
	} else if client.StatusCode(err) != http.StatusNotFound {
		return fmt.Errorf("setup: %w", err)
	}
	if err := s.coffer.CreateCollection(ctx, Schema); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	return nil
}

// AddCustomer stores a customer in Coffer, tokenizes the card, and keeps
// only the record id and the token.
func (s *Shop) AddCustomer(ctx context.Context, c Customer) (string, error) {
	if c.Name == "" || c.Email == "" {
		return "", errors.New("name and email are required")
	}
	var token string
	if c.Card != "" {
		// A format-preserving token keeps the last four digits, so the shop
		// can show "card ending 1111" without ever holding the number.
		tokens, err := s.coffer.Tokenize(ctx, []client.TokenItem{{Value: c.Card, Type: "card_number", Mode: "format_preserving"}})
		if err != nil {
			return "", fmt.Errorf("tokenize the card: %w", err)
		}
		token = tokens[0]
	}
	data := map[string]any{"name": c.Name, "email": c.Email}
	if c.Phone != "" {
		data["phone"] = c.Phone
	}
	if c.Address != "" {
		data["address"] = c.Address
	}
	id, err := s.coffer.CreateRecord(ctx, Collection, client.NewRecord{Data: data})
	if err != nil {
		return "", fmt.Errorf("store the customer: %w", err)
	}
	s.mu.Lock()
	s.accounts[id] = account{RecordID: id, CardToken: token}
	s.mu.Unlock()
	// The email is logged on purpose here, to show the handler at work:
	// it leaves the process masked.
	s.log.Info("customer added", "id", id, "email", c.Email)
	return id, nil
}

// Customer returns a customer as the shop's Coffer client may see it
// (fields plain or masked as the policy says).
func (s *Shop) Customer(ctx context.Context, id string) (Customer, error) {
	s.mu.Lock()
	acc, ok := s.accounts[id]
	s.mu.Unlock()
	if !ok {
		return Customer{}, errNotFound
	}
	r, err := s.coffer.GetRecord(ctx, Collection, acc.RecordID)
	if err != nil {
		return Customer{}, fmt.Errorf("read the customer: %w", err)
	}
	c := Customer{ID: r.ID}
	c.Name, _ = r.Data["name"].(string)
	c.Email, _ = r.Data["email"].(string)
	c.Phone, _ = r.Data["phone"].(string)
	c.Address, _ = r.Data["address"].(string)
	if n := len(acc.CardToken); n >= 4 {
		c.CardLast4 = acc.CardToken[n-4:]
	}
	return c, nil
}

// FindByEmail returns the ids of the customers with this email, searched
// in Coffer's blind index: nothing is decrypted to match.
func (s *Shop) FindByEmail(ctx context.Context, email string) ([]string, error) {
	recs, err := s.coffer.Search(ctx, Collection, map[string]any{"email": email}, 10)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// Charge pays with a customer's card: the payment step (here only
// simulated) is the one place that detokenizes, and only the token is
// logged.
func (s *Shop) Charge(ctx context.Context, id string, cents int) error {
	s.mu.Lock()
	acc, ok := s.accounts[id]
	s.mu.Unlock()
	if !ok || acc.CardToken == "" {
		return errNotFound
	}
	cards, err := s.coffer.Detokenize(ctx, []string{acc.CardToken})
	if err != nil {
		return fmt.Errorf("detokenize the card: %w", err)
	}
	// A payment provider call would take cards[0] here. A careless log
	// line with the number is still masked by the handler.
	s.log.Info("charging card", "customer", id, "cents", cents, "detail", "card "+cards[0])
	return nil
}

var errNotFound = errors.New("no such customer")

// Handler is the shop's HTTP API: POST /customers, GET /customers/{id},
// GET /customers?email=…, POST /customers/{id}/charge.
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /customers", func(w http.ResponseWriter, r *http.Request) {
		var c Customer
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&c); err != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		id, err := s.AddCustomer(r.Context(), c)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Customer(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("GET /customers", func(w http.ResponseWriter, r *http.Request) {
		ids, err := s.FindByEmail(r.Context(), r.URL.Query().Get("email"))
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string][]string{"ids": ids})
	})
	mux.HandleFunc("POST /customers/{id}/charge", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Charge(r.Context(), r.PathValue("id"), 100); err != nil {
			s.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// fail answers an error without repeating anything the customer sent.
func (s *Shop) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errNotFound), client.StatusCode(err) == http.StatusNotFound:
		http.Error(w, "not found", http.StatusNotFound)
	case client.StatusCode(err) == http.StatusUnprocessableEntity:
		http.Error(w, "invalid customer", http.StatusUnprocessableEntity)
	default:
		s.log.Error("request failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NewLogger returns a JSON logger whose every message and attribute passes
// through Coffer's redacting handler.
func NewLogger(w io.Writer) *slog.Logger {
	return slog.New(redact.NewHandler(slog.NewJSONHandler(w, nil), redact.HandlerOptions{}))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve the shop's API on")
	setup := flag.Bool("setup", false, "create the collection (with an admin client's credentials) and exit")
	flag.Parse()
	log := NewLogger(os.Stderr)
	c, err := client.New(os.Getenv("COFFER_URL"),
		client.WithCAFile(os.Getenv("COFFER_CA_FILE")),
		client.WithClientCredentials(os.Getenv("SHOP_CLIENT_ID"), os.Getenv("SHOP_CLIENT_SECRET")))
	if err != nil {
		log.Error("coffer client", "err", err)
		os.Exit(1)
	}
	shop := New(c, log)
	if *setup {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := shop.Setup(ctx); err != nil {
			log.Error("setup", "err", err)
			os.Exit(1)
		}
		return
	}
	srv := &http.Server{Addr: *listen, Handler: shop.Handler(), ReadHeaderTimeout: 5 * time.Second}
	log.Info("shop listening", "addr", *listen)
	if err := srv.ListenAndServe(); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
