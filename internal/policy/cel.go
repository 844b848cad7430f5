package policy

import (
	"fmt"
	"reflect"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// Bounds of conditions.
const (
	// CostLimit is the most a condition may cost to evaluate, in CEL cost
	// units; a condition that runs over it is an evaluation error, and
	// denies.
	CostLimit = 20_000
	// MaxConditionLength is the longest `when`, in characters.
	MaxConditionLength = 4096
	maxParseDepth      = 64
)

// Size bounds assumed by the static cost estimate. A condition whose
// estimated cost under these bounds is within CostLimit runs without a cost
// tracker (three times faster) — but only for inputs that fit them; any
// other input runs the tracked program.
const (
	hintString = 1024 // bytes of any string the activation holds
	hintList   = 64   // principal.roles and principal.attributes entries
)

// principal, resource and request are what conditions see, declared to CEL
// as object types so that a misspelt field is a compile problem.
type principal struct {
	ID         string            `cel:"id"`
	Kind       string            `cel:"kind"`
	Roles      []string          `cel:"roles"`
	Attributes map[string]string `cel:"attributes"`
	MFA        bool              `cel:"mfa"`
}

type resource struct {
	Owner      string `cel:"owner"`
	Subject    string `cel:"subject"`
	Collection string `cel:"collection"`
	ID         string `cel:"id"`
}

type request struct {
	Time time.Time `cel:"time"`
	IP   string    `cel:"ip"`
}

// activation binds the three variables without a map, and is reused.
type activation struct {
	principal principal
	resource  resource
	request   request
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "principal":
		return &a.principal, true
	case "resource":
		return &a.resource, true
	case "request":
		return &a.request, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// fits reports whether every size in a is within the estimate's bounds.
func (a *activation) fits() bool {
	p := &a.principal
	if len(p.Roles) > hintList || len(p.Attributes) > hintList ||
		len(p.ID) > hintString || len(p.Kind) > hintString ||
		len(a.resource.Owner) > hintString || len(a.resource.Subject) > hintString || len(a.resource.Collection) > hintString ||
		len(a.resource.ID) > hintString || len(a.request.IP) > hintString {
		return false
	}
	for _, r := range p.Roles {
		if len(r) > hintString {
			return false
		}
	}
	for k, v := range p.Attributes {
		if len(k) > hintString || len(v) > hintString {
			return false
		}
	}
	return true
}

// condition is a compiled `when`.
type condition struct {
	// fast runs without cost tracking; nil unless the static estimate
	// bounds the cost within CostLimit.
	fast cel.Program
	// tracked stops at CostLimit.
	tracked cel.Program
	// readsRecord is set when the condition may read what only the stored
	// record tells: resource.owner or resource.subject (any use of
	// resource other than resource.collection and resource.id).
	readsRecord bool
}

// eval evaluates the condition; any error, a non-bool or a panic is false
// with an error.
func (c *condition) eval(a *activation) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("policy: condition panicked")
		}
	}()
	prg := c.tracked
	if c.fast != nil && a.fits() {
		prg = c.fast
	}
	v, _, err := prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, isBool := v.(types.Bool)
	if !isBool {
		return false, fmt.Errorf("policy: condition gave %s, not bool", v.Type())
	}
	return bool(b), nil
}

// celEnv is the CEL environment of one Load.
type celEnv struct {
	env *cel.Env
}

func newCELEnv() (*celEnv, error) {
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[*principal](), reflect.TypeFor[*resource](), reflect.TypeFor[*request](),
			ext.ParseStructTags(true)),
		ext.Network(),
		cel.Variable("principal", cel.ObjectType("policy.principal")),
		cel.Variable("resource", cel.ObjectType("policy.resource")),
		cel.Variable("request", cel.ObjectType("policy.request")),
		cel.ParserExpressionSizeLimit(MaxConditionLength),
		cel.ParserRecursionLimit(maxParseDepth),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	return &celEnv{env: env}, nil
}

// compile parses, type-checks and plans a condition. Problems are
// "LINE:COLUMN: message" (1-based) where CEL gives a place.
func (e *celEnv) compile(src string) (*condition, []string) {
	if n := len([]rune(src)); n > MaxConditionLength {
		return nil, []string{fmt.Sprintf("condition is %d characters long; at most %d", n, MaxConditionLength)}
	}
	checked, iss := e.env.Compile(src)
	if iss.Err() != nil {
		var out []string
		for _, er := range iss.Errors() {
			if l := er.Location; l != nil && l.Line() > 0 {
				out = append(out, fmt.Sprintf("%d:%d: %s", l.Line(), l.Column()+1, er.Message))
			} else {
				out = append(out, er.Message)
			}
		}
		if len(out) == 0 {
			out = append(out, "does not compile")
		}
		return nil, out
	}
	if t := checked.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, []string{fmt.Sprintf("condition must be a bool, not %s", t)}
	}
	est, err := e.env.EstimateCost(checked, sizeHints{})
	if err != nil {
		return nil, []string{"cannot estimate the cost: " + err.Error()}
	}
	if est.Min > CostLimit {
		return nil, []string{fmt.Sprintf("condition always costs more than the limit (%d > %d)", est.Min, CostLimit)}
	}
	c := &condition{readsRecord: readsRecord(checked.NativeRep())}
	if c.tracked, err = e.env.Program(checked, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(CostLimit)); err != nil {
		return nil, []string{"cannot plan: " + err.Error()}
	}
	if est.Max <= CostLimit {
		if c.fast, err = e.env.Program(checked, cel.EvalOptions(cel.OptOptimize)); err != nil {
			return nil, []string{"cannot plan: " + err.Error()}
		}
	}
	return c, nil
}

// readsRecord reports whether the expression uses the resource variable
// other than as resource.collection or resource.id (which the server knows
// without loading the record).
func readsRecord(a *celast.AST) bool {
	idents, known := 0, 0
	celast.PreOrderVisit(celast.NavigateAST(a), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			if e.AsIdent() == "resource" {
				idents++
			}
		case celast.SelectKind:
			s := e.AsSelect()
			if op := s.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "resource" &&
				!s.IsTestOnly() && (s.FieldName() == "collection" || s.FieldName() == "id") {
				known++
			}
		}
	}))
	return idents > known
}

// sizeHints bounds the sizes of the activation for the cost estimate; see
// hintString and hintList, which (*activation).fits enforces.
type sizeHints struct{}

// EstimateSize implements cost.Estimator.
func (sizeHints) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	p := n.Path()
	if len(p) < 2 || (p[0] != "principal" && p[0] != "resource" && p[0] != "request") {
		return nil
	}
	switch {
	case len(p) == 2 && (p[1] == "roles" || p[1] == "attributes"):
		return &cost.SizeEstimate{Min: 0, Max: hintList}
	case len(p) == 2:
		return &cost.SizeEstimate{Min: 0, Max: hintString}
	case len(p) == 3 && (p[1] == "roles" || p[1] == "attributes"):
		return &cost.SizeEstimate{Min: 0, Max: hintString}
	}
	return nil
}

// EstimateCallCost implements cost.Estimator.
func (sizeHints) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}
