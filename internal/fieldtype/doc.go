// Package fieldtype owns the rules of Coffer's field types (string, email,
// phone, card_number, ssn, date, integer): which values each accepts, the
// form a value is stored in and the form its blind index is computed from
// (NFC text, folded emails, digits of a card or phone number), and how a
// stored value is written back in an answer.
//
// The record vault and the tokenization service both apply these rules, so
// they sit here, below both, depending only on the domain. It validates and
// normalizes values and nothing else: it never keeps, logs or seals one,
// and its errors (a 422 coffer.Error) name the field and the rule broken,
// never the value.
package fieldtype
