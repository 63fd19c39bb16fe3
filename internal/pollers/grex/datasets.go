package grex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

// SourceName is the source token of every G-REX subject and event type.
const SourceName = "grex"

// MaxPageSize is the largest $top the registry accepts, and the page size of the keyset
// datasets.
const MaxPageSize = 100

// Registry paths under the API host, and the field names the client relies on. Kept here
// only; the sandbox declares its own copy (the fake must not share the client's reading).
const (
	accountPath      = "/AH/managementapi/v2/Accounts/"
	certificatesPath = "/AH/managementapi/v2/Accounts/%s/CertificateBundles"
	transactionsPath = "/AH/transactionapi/v1/Accounts/%s/Transactions"

	fieldModifiedAt    = "ModifiedAt"
	fieldBundleID      = "BundleId"
	fieldTransactionID = "TransactionId"
	fieldAccountNumber = "AccountNumber"
)

// Dataset names.
const (
	DatasetCertificates = "certificates"
	DatasetTransactions = "transactions"
	DatasetAccounts     = "accounts"
)

// paramAccount is the Partition.Params key of the raw account number.
const paramAccount = "account"

// Certificates are the certificate bundles of an account. Keyset paged on ModifiedAt: one full
// load, then only bundles modified since the cursor; each change of state (issue, transfer,
// cancellation, expiry, withdrawal, lock) is a new revision of the bundle's key. The look-back
// of one second re-reads the bundles that share the cursor's ModifiedAt, so a tie that changed
// since is not skipped by the offset.
var Certificates = &pollers.Dataset{
	Source: SourceName, Name: DatasetCertificates,
	Cadence: 15 * time.Minute, LookBack: time.Second, PageSize: MaxPageSize,
	Request: listRequest(certificatesPath, fieldBundleID),
	Decode:  DecodeCertificates,
}

// Transactions are the registry transactions of an account (issuance, transfer, cancellation,
// expiry...), keyset paged on ModifiedAt like Certificates.
var Transactions = &pollers.Dataset{
	Source: SourceName, Name: DatasetTransactions,
	Cadence: 15 * time.Minute, LookBack: time.Second, PageSize: MaxPageSize,
	Request: listRequest(transactionsPath, fieldTransactionID),
	Decode:  DecodeTransactions,
}

// Accounts is the account summary (volumes by state): one request per account per poll, and an
// event only when the summary changed.
var Accounts = &pollers.Dataset{
	Source: SourceName, Name: DatasetAccounts,
	Cadence: time.Hour, Backfill: time.Minute,
	Request: func(p pollers.Partition, _ pollers.Window) (string, url.Values) {
		return accountPath + url.PathEscape(p.Params[paramAccount]), nil
	},
	Decode: DecodeAccount,
}

// Datasets lists every G-REX dataset.
var Datasets = []*pollers.Dataset{Certificates, Transactions, Accounts}

// listRequest pages a list ordered by ModifiedAt then idField, from the window's From
// (no filter on a full load) to its To. Values hold no "/" (the firewall refuses it).
func listRequest(pathFormat, idField string) func(pollers.Partition, pollers.Window) (string, url.Values) {
	return func(p pollers.Partition, w pollers.Window) (string, url.Values) {
		top := w.Top
		if top <= 0 || top > MaxPageSize {
			top = MaxPageSize
		}
		q := url.Values{
			"$top":     {strconv.Itoa(top)},
			"$orderby": {fieldModifiedAt + " asc," + idField + " asc"},
		}
		if w.Skip > 0 {
			q.Set("$skip", strconv.Itoa(w.Skip))
		}
		var filter string
		if !w.From.IsZero() {
			filter = fieldModifiedAt + " ge " + w.From.UTC().Format(time.RFC3339Nano)
		}
		if !w.To.IsZero() {
			if filter != "" {
				filter += " and "
			} else {
				// The registry only takes "ge" first; the epoch bounds a full load.
				filter = fieldModifiedAt + " ge " + time.Unix(0, 0).UTC().Format(time.RFC3339) + " and "
			}
			filter += fieldModifiedAt + " lt " + w.To.UTC().Format(time.RFC3339Nano)
		}
		if filter != "" {
			q.Set("$filter", filter)
		}
		return fmt.Sprintf(pathFormat, url.PathEscape(p.Params[paramAccount])), q
	}
}

// errPage is the decoders' error for a page they refuse.
var errPage = errors.New("grex: malformed page")

// DecodeCertificates decodes a page of certificate bundles: {"value":[bundle...]}. Key is
// BundleId, time is ModifiedAt, the body is the bundle as sent, compacted.
func DecodeCertificates(body []byte) ([]pollers.Record, error) {
	return decodeList(body, fieldBundleID)
}

// DecodeTransactions decodes a page of transactions: {"value":[transaction...]}. Key is
// TransactionId, time is ModifiedAt.
func DecodeTransactions(body []byte) ([]pollers.Record, error) {
	return decodeList(body, fieldTransactionID)
}

// DecodeAccount decodes an account summary object. Key is AccountNumber, time is ModifiedAt.
func DecodeAccount(body []byte) ([]pollers.Record, error) {
	rec, err := decodeRecord(json.RawMessage(body), fieldAccountNumber)
	if err != nil {
		return nil, fmt.Errorf("%w: account: %w", errPage, err)
	}
	return []pollers.Record{rec}, nil
}

func decodeList(body []byte, keyField string) ([]pollers.Record, error) {
	var page struct {
		Value *[]json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("%w: %w", errPage, err)
	}
	if page.Value == nil {
		return nil, fmt.Errorf("%w: no \"value\" array", errPage)
	}
	recs := make([]pollers.Record, 0, len(*page.Value))
	for i, raw := range *page.Value {
		rec, err := decodeRecord(raw, keyField)
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: %w", errPage, i, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// decodeRecord reads the key and time of one object and keeps its bytes compacted as the body.
func decodeRecord(raw json.RawMessage, keyField string) (pollers.Record, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return pollers.Record{}, errors.New("not a JSON object")
	}
	var key, mod string
	if err := json.Unmarshal(fields[keyField], &key); err != nil || key == "" {
		return pollers.Record{}, fmt.Errorf("%s missing or not a non-empty string", keyField)
	}
	if err := json.Unmarshal(fields[fieldModifiedAt], &mod); err != nil {
		return pollers.Record{}, fmt.Errorf("%s of %q missing or not a string", fieldModifiedAt, key)
	}
	t, err := time.Parse(time.RFC3339Nano, mod)
	if err != nil {
		return pollers.Record{}, fmt.Errorf("%s of %q is not an RFC 3339 date-time", fieldModifiedAt, key)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return pollers.Record{}, fmt.Errorf("compact %q: %w", key, err)
	}
	return pollers.Record{Key: key, Time: t.UTC(), Body: buf.Bytes()}, nil
}
