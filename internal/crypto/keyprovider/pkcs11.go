//go:build pkcs11

package keyprovider

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/cofferhq/coffer/internal/secret"
)

// PKCS#11 wrapped blob: format byte, the 12-byte GCM IV, ciphertext and
// 16-byte tag.
const (
	pkcs11Format      = 1
	gcmIVSize         = 12
	gcmTagSize        = 16
	pkcs11Overhead    = 1 + gcmIVSize + gcmTagSize
	defaultP11Session = 4
)

// pkcs11Label binds every blob the PKCS#11 provider wraps to its purpose
// and format, like wrapLabel for Local.
var pkcs11Label = []byte("coffer/keyprovider/pkcs11/wrap/v1")

// PKCS11 is a Provider whose root key is an AES-256 key object on a
// PKCS#11 token (an HSM): Wrap and Unwrap run AES-GCM on the token, and the
// key, sensitive and not extractable, never leaves it. It holds a small
// pool of logged-in sessions and is safe for concurrent use.
type PKCS11 struct {
	ctx      *pkcs11.Ctx
	slot     uint
	pin      secret.Key
	keyLabel string
	name     string
	rand     io.Reader

	sem  chan struct{} // a slot per session that may be open
	idle chan *p11Session

	mu     sync.Mutex // guards closed and pushes to idle
	closed bool
	done   chan struct{}
}

// p11Session is a pooled session and the root key's handle in it.
type p11Session struct {
	h   pkcs11.SessionHandle
	key pkcs11.ObjectHandle
}

// errPKCS11Closed is returned by a PKCS11 used after Close.
var errPKCS11Closed = errors.New("keyprovider: pkcs11 provider is closed")

// OpenPKCS11 logs in to the token cfg names and finds the root key
// labelled cfg.KeyLabel. It fails with an error wrapping fs.ErrNotExist when
// no such key exists (make one with CreatePKCS11Key), and refuses a key
// that is not AES-256, that may be extracted or is not sensitive, or that
// two objects share the label of. Errors never include the PIN. Close it
// when done.
//
// The module is initialised once per process and never finalised here:
// PKCS#11 initialisation is process-wide, and other providers (or other
// code) may be using the same module. Login is process-wide too: while
// another provider of this process holds a session on the same token, the
// token reports the user logged in and does not check this PIN again.
func OpenPKCS11(cfg PKCS11Config) (*PKCS11, error) {
	p, err := openModule(cfg)
	if err != nil {
		return nil, err
	}
	size := cfg.MaxSessions
	if size <= 0 {
		size = defaultP11Session
	}
	p.sem = make(chan struct{}, size)
	p.idle = make(chan *p11Session, size)
	p.done = make(chan struct{})
	// Open the first session now, so a wrong PIN or a missing or unfit key
	// is reported here.
	s, err := p.acquire(context.Background())
	if err != nil {
		return nil, err
	}
	if err := p.checkKey(s); err != nil {
		p.release(s, true)
		return nil, err
	}
	p.release(s, false)
	return p, nil
}

// openModule loads and initialises the module and finds the token.
func openModule(cfg PKCS11Config) (*PKCS11, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" || cfg.KeyLabel == "" {
		return nil, errors.New("keyprovider: pkcs11: module, token label and key label are required")
	}
	pin, err := cfg.userPIN()
	if err != nil {
		return nil, err
	}
	name := "pkcs11:token=" + cfg.TokenLabel + ";object=" + cfg.KeyLabel
	ctx := pkcs11.New(cfg.Module)
	if ctx == nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: cannot load module %s", cfg.Module)
	}
	if err := ctx.Initialize(); err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return nil, fmt.Errorf("keyprovider: pkcs11: initialise %s: %w", cfg.Module, err)
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: list slots: %w", err)
	}
	var found []uint
	for _, sl := range slots {
		ti, err := ctx.GetTokenInfo(sl)
		if err != nil {
			return nil, fmt.Errorf("keyprovider: pkcs11: token info of slot %d: %w", sl, err)
		}
		if ti.Label == cfg.TokenLabel && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			found = append(found, sl)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("keyprovider: pkcs11: no initialised token labelled %q in %s: %w", cfg.TokenLabel, cfg.Module, fs.ErrNotExist)
	case 1:
	default:
		return nil, fmt.Errorf("keyprovider: pkcs11: %d tokens are labelled %q; labels must be unique", len(found), cfg.TokenLabel)
	}
	r := cfg.Rand
	if r == nil {
		r = rand.Reader
	}
	return &PKCS11{ctx: ctx, slot: found[0], pin: secret.NewKey([]byte(pin)), keyLabel: cfg.KeyLabel, name: name, rand: r}, nil
}

func (c PKCS11Config) userPIN() (string, error) {
	switch {
	case c.PIN != "" && c.PINEnv != "":
		return "", errors.New("keyprovider: pkcs11: set the PIN or the variable holding it, not both")
	case c.PIN != "":
		return c.PIN, nil
	case c.PINEnv != "":
		v, ok := os.LookupEnv(c.PINEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("keyprovider: pkcs11: environment variable %s holding the PIN is not set", c.PINEnv)
		}
		return v, nil
	default:
		return "", errors.New("keyprovider: pkcs11: a user PIN is required")
	}
}

// CreatePKCS11Key generates the AES-256 root key on the token cfg names,
// labelled cfg.KeyLabel: a token object, private, sensitive, not
// extractable, usable only to encrypt and decrypt. The token makes the key;
// it never leaves it. If a key with that label exists it changes nothing
// and returns an error wrapping fs.ErrExist.
func CreatePKCS11Key(cfg PKCS11Config) error {
	p, err := openModule(cfg)
	if err != nil {
		return err
	}
	h, err := p.ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("keyprovider: pkcs11: open session: %w", err)
	}
	defer p.ctx.CloseSession(h)
	if err := p.login(h); err != nil {
		return err
	}
	keys, err := p.findKeys(h)
	if err != nil {
		return err
	}
	if len(keys) > 0 {
		return fmt.Errorf("keyprovider: pkcs11: %s: a key with this label exists: %w", p.name, fs.ErrExist)
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, RootKeySize),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, cfg.KeyLabel),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
	if _, err := p.ctx.GenerateKey(h, mech, tmpl); err != nil {
		return fmt.Errorf("keyprovider: pkcs11: %s: generate key: %w", p.name, err)
	}
	return nil
}

// Name implements Provider: "pkcs11:token=TOKEN;object=KEY".
func (p *PKCS11) Name() string { return p.name }

// String returns Name, so printing a provider never shows its PIN.
func (p *PKCS11) String() string { return p.name }

// GoString returns Name, so printing a provider never shows its PIN.
func (p *PKCS11) GoString() string { return p.name }

// Wrap implements Provider: AES-256-GCM on the token under the root key,
// with a fresh 12-byte IV from Rand (or the one the token insists on) and
// aad bound as GCM additional data.
func (p *PKCS11) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	iv := make([]byte, gcmIVSize)
	if _, err := io.ReadFull(p.rand, iv); err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: read IV: %w", err)
	}
	var out []byte
	err := p.do(ctx, func(s *p11Session) error {
		params := pkcs11.NewGCMParams(iv, p11AAD(aad), gcmTagSize*8)
		defer params.Free()
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
		if err := p.ctx.EncryptInit(s.h, mech, s.key); err != nil {
			return err
		}
		ct, err := p.ctx.Encrypt(s.h, plaintext)
		if err != nil {
			return err
		}
		// Some tokens choose the IV themselves and write it back.
		used := params.IV()
		if len(used) != gcmIVSize || len(ct) != len(plaintext)+gcmTagSize {
			return errors.New("token returned an unexpected GCM IV or ciphertext length")
		}
		out = make([]byte, 0, pkcs11Overhead+len(plaintext))
		out = append(append(append(out, pkcs11Format), used...), ct...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: wrap: %w", p.name, err)
	}
	return out, nil
}

// Unwrap implements Provider. A blob that does not open under this key
// with this aad returns ErrUnwrap; a token that cannot be reached returns
// another error.
//
// Tokens report a failed GCM tag differently (SoftHSM2 says
// CKR_GENERAL_ERROR). A generic failure counts as ErrUnwrap only if the
// token then passes a wrap-and-unwrap self-test, so a failing token is
// never mistaken for a wrong root key.
func (p *PKCS11) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	pt, err := p.decrypt(ctx, wrapped, aad)
	if isCKR(err, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED) && p.selfTest(ctx) == nil {
		return nil, ErrUnwrap
	}
	if errors.Is(err, ErrUnwrap) || isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID, pkcs11.CKR_DATA_LEN_RANGE) {
		return nil, ErrUnwrap
	}
	if err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: unwrap: %w", p.name, err)
	}
	return pt, nil
}

// decrypt runs AES-GCM decryption on the token and returns its error as is.
func (p *PKCS11) decrypt(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < pkcs11Overhead || wrapped[0] != pkcs11Format {
		return nil, ErrUnwrap
	}
	iv, ct := wrapped[1:1+gcmIVSize], wrapped[1+gcmIVSize:]
	var out []byte
	err := p.do(ctx, func(s *p11Session) error {
		params := pkcs11.NewGCMParams(iv, p11AAD(aad), gcmTagSize*8)
		defer params.Free()
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
		if err := p.ctx.DecryptInit(s.h, mech, s.key); err != nil {
			return err
		}
		pt, err := p.ctx.Decrypt(s.h, ct)
		if err != nil {
			return err
		}
		out = pt
		return nil
	})
	return out, err
}

// selfTest wraps and unwraps a random key, proving the token and the root
// key work.
func (p *PKCS11) selfTest(ctx context.Context) error {
	probe := make([]byte, RootKeySize)
	defer clear(probe)
	if _, err := io.ReadFull(p.rand, probe); err != nil {
		return err
	}
	aad := []byte("coffer/keyprovider/pkcs11/self-test")
	w, err := p.Wrap(ctx, probe, aad)
	if err != nil {
		return err
	}
	back, err := p.decrypt(ctx, w, aad)
	defer clear(back)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(back, probe) != 1 {
		return errors.New("self-test unwrapped something other than it wrapped")
	}
	return nil
}

func p11AAD(aad []byte) []byte {
	ad := make([]byte, 0, len(pkcs11Label)+len(aad))
	return append(append(ad, pkcs11Label...), aad...)
}

// do runs op on a pooled session. A session the token no longer knows is
// dropped and op tried once more on another.
func (p *PKCS11) do(ctx context.Context, op func(*p11Session) error) error {
	var err error
	for range 2 {
		if err = ctx.Err(); err != nil {
			return err
		}
		var s *p11Session
		if s, err = p.acquire(ctx); err != nil {
			return err
		}
		err = op(s)
		broken := isCKR(err, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
			pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID,
			pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR,
			pkcs11.CKR_OPERATION_ACTIVE)
		p.release(s, broken)
		if !broken {
			return err
		}
	}
	return err
}

// acquire takes an idle session, or opens one while fewer than
// MaxSessions are open, or waits for one.
func (p *PKCS11) acquire(ctx context.Context) (*p11Session, error) {
	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	select {
	case s := <-p.idle:
		return s, nil
	case p.sem <- struct{}{}:
		s, err := p.open()
		if err != nil {
			<-p.sem
			return nil, err
		}
		return s, nil
	case <-p.done:
		return nil, errPKCS11Closed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release puts s back in the pool, or closes it if broken or the provider
// was closed.
func (p *PKCS11) release(s *p11Session, broken bool) {
	p.mu.Lock()
	if !broken && !p.closed {
		p.idle <- s // never blocks: at most cap(sem) sessions exist
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = p.ctx.CloseSession(s.h)
	<-p.sem
}

// open opens and logs in a session and finds the key in it.
func (p *PKCS11) open() (*p11Session, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, errPKCS11Closed
	}
	h, err := p.ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: open session: %w", p.name, err)
	}
	if err := p.login(h); err != nil {
		_ = p.ctx.CloseSession(h)
		return nil, err
	}
	keys, err := p.findKeys(h)
	if err != nil {
		_ = p.ctx.CloseSession(h)
		return nil, err
	}
	switch len(keys) {
	case 1:
		return &p11Session{h: h, key: keys[0]}, nil
	case 0:
		_ = p.ctx.CloseSession(h)
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: no such key (make it with CreatePKCS11Key): %w", p.name, fs.ErrNotExist)
	default:
		_ = p.ctx.CloseSession(h)
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: %d keys share the label; it must be unique", p.name, len(keys))
	}
}

// login logs the application in as the user; a login that another
// session (or provider) of this process made is fine. PKCS#11 keeps one
// login per application and token, until its last session closes.
func (p *PKCS11) login(h pkcs11.SessionHandle) error {
	pin := p.pin.Bytes()
	defer clear(pin)
	err := p.ctx.Login(h, pkcs11.CKU_USER, string(pin))
	if err != nil && !isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		// The error is the token's code, never the PIN.
		return fmt.Errorf("keyprovider: pkcs11: %s: log in: %w", p.name, err)
	}
	return nil
}

// findKeys returns the secret key objects labelled keyLabel (at most two).
func (p *PKCS11) findKeys(h pkcs11.SessionHandle) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, p.keyLabel),
	}
	if err := p.ctx.FindObjectsInit(h, tmpl); err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: find key: %w", p.name, err)
	}
	keys, _, err := p.ctx.FindObjects(h, 2)
	if ferr := p.ctx.FindObjectsFinal(h); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("keyprovider: pkcs11: %s: find key: %w", p.name, err)
	}
	return keys, nil
}

// checkKey refuses a root key object that is not a sensitive,
// non-extractable AES-256 key able to encrypt and decrypt.
func (p *PKCS11) checkKey(s *p11Session) error {
	attrs, err := p.ctx.GetAttributeValue(s.h, s.key, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil),
	})
	if err != nil {
		return fmt.Errorf("keyprovider: pkcs11: %s: read key attributes: %w", p.name, err)
	}
	get := func(t uint) []byte {
		for _, a := range attrs {
			if a.Type == t {
				return a.Value
			}
		}
		return nil
	}
	switch {
	case ulong(get(pkcs11.CKA_KEY_TYPE)) != pkcs11.CKK_AES || ulong(get(pkcs11.CKA_VALUE_LEN)) != RootKeySize:
		return fmt.Errorf("keyprovider: pkcs11: %s is not an AES-256 key", p.name)
	case !boolAttr(get(pkcs11.CKA_SENSITIVE)) || boolAttr(get(pkcs11.CKA_EXTRACTABLE)):
		return fmt.Errorf("keyprovider: pkcs11: %s may leave the token (it must be sensitive and not extractable); make a new key with CreatePKCS11Key", p.name)
	case !boolAttr(get(pkcs11.CKA_ENCRYPT)) || !boolAttr(get(pkcs11.CKA_DECRYPT)):
		return fmt.Errorf("keyprovider: pkcs11: %s may not encrypt and decrypt", p.name)
	}
	return nil
}

// ulong decodes a CK_ULONG attribute (native byte order, 4 or 8 bytes).
func ulong(b []byte) uint64 {
	switch len(b) {
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	case 8:
		return binary.NativeEndian.Uint64(b)
	}
	return ^uint64(0)
}

func boolAttr(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// Close closes the provider's sessions; calls in flight finish first, and
// later calls fail. The module stays initialised (see OpenPKCS11).
func (p *PKCS11) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	for {
		select {
		case s := <-p.idle:
			_ = p.ctx.CloseSession(s.h)
			<-p.sem
		default:
			return nil
		}
	}
}

// isCKR reports whether err is one of the PKCS#11 return codes.
func isCKR(err error, codes ...uint) bool {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range codes {
		if uint(e) == c {
			return true
		}
	}
	return false
}
