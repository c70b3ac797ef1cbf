package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/auditlog/auditlog/service"
)

// errTampered makes `verify` exit 1 after printing its findings.
var errTampered = errors.New("the log is not intact")

func runKeygen(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("keygen", `Make an integrity key: the file every process that records or checkpoints
reads (AUDITLOG_SIGNING_KEY), written with mode 0600 to --out, which must
not exist yet. Prints the verifier key (public) on stdout: give it to
whoever checks checkpoints and proofs (auditlog verify-proof --key).`, getenv, &cfg, stdout, stderr)
	out := fs.String("out", "", "the key file to write (required; never overwritten)")
	name := fs.String("name", "auditlog", "the key's name: the checkpoints' origin line (no spaces, no '+')")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("keygen needs --out FILE")
	}
	file, vkey, err := service.GenerateIntegrityKey(*name)
	if err == nil {
		// A name the signer refuses (a space) would give a key no process
		// can load: refuse it now.
		_, err = service.ParseIntegrityKey(file)
	}
	if err != nil {
		return usagef("--name: %q is not a key name: no spaces, no '+'", *name)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(file); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	fmt.Fprintf(stderr, "keygen: wrote %s; start every process with AUDITLOG_SIGNING_KEY=%s\n", *out, *out)
	return nil
}

// integrityLog opens the log and requires an integrity key.
func (c *config) integrityLog(ctx context.Context, cmd string) (func(), *service.Log, error) {
	if c.integrity == nil {
		return nil, nil, usagef("%s needs the integrity key: --signing-key FILE or AUDITLOG_SIGNING_KEY (auditlog keygen makes one)", cmd)
	}
	pool, log, err := c.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pool.Close, log, nil
}

func runCheckpoint(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("checkpoint", `Append every event recorded since the last checkpoint to its tree and write a
signed checkpoint of every tree (what the worker's periodic job does every
minute). Prints the checkpoint note; --json prints what was appended too.`, getenv, &cfg, stdout, stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	closeDB, log, err := cfg.integrityLog(ctx, "checkpoint")
	if err != nil {
		return err
	}
	defer closeDB()
	res, err := log.Checkpoint(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprint(stdout, res.Checkpoint.Note)
	var n int64
	for _, c := range res.Appended {
		n += c
	}
	fmt.Fprintf(stderr, "checkpoint %d: %d events appended\n", res.Checkpoint.ID, n)
	if len(res.Unmarked) > 0 {
		fmt.Fprintf(stderr, "checkpoint: %d events not appended (no valid record mark, or a sealed month): run auditlog verify\n", len(res.Unmarked))
	}
	return nil
}

// verifierFrom is the verifier key --key names (a key text or a file
// holding one), else the integrity key's.
func verifierFrom(key string, cfg *config) (note.Verifier, error) {
	if key == "" {
		if cfg.integrity == nil {
			return nil, usagef("give --key VERIFIER_KEY (or the integrity key: AUDITLOG_SIGNING_KEY)")
		}
		return service.NewCheckpointVerifier(cfg.integrity.VerifierKey)
	}
	if data, err := os.ReadFile(key); err == nil {
		key = lastKeyLine(string(data))
	}
	v, err := service.NewCheckpointVerifier(key)
	if err != nil {
		return nil, usagef("--key: %v", err)
	}
	return v, nil
}

// lastKeyLine is the verifier key in a file: its last line that is not a
// comment or a private key (a key file from keygen works too).
func lastKeyLine(s string) string {
	key := ""
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "PRIVATE+") && !strings.HasPrefix(line, "mac ") {
			key = line
		}
	}
	return key
}

func runVerify(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("verify", `Recompute every live leaf and tree and check them against the signed
checkpoints and the seals of dropped months. Exits 0 only when clean; else
prints each finding (the event altered, missing, inserted or moved; the
checkpoint whose signature, chain or roots fail) and exits 1. Events newer
than the last checkpoint are not covered (counted as pending). Shows
progress on a terminal.`, getenv, &cfg, stdout, stderr)
	since := fs.Int64("since", 0, 0, "verify only what was appended after this checkpoint id")
	key := fs.String("key", "", "the verifier key, or a file holding it (default: the integrity key's)")
	var outside stringList
	fs.Var(&outside, "against", "a checkpoint note `FILE` kept outside the database (repeatable): the trees must extend it")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	v, err := verifierFrom(*key, &cfg)
	if err != nil {
		return err
	}
	opts := service.VerifyOpts{Verifier: v, Since: *since}
	for _, path := range outside {
		b, err := os.ReadFile(path)
		if err != nil {
			return usagef("--against: %v", err)
		}
		opts.Outside = append(opts.Outside, b)
	}
	bar := newProgress(stderr, -1, "verify", false)
	opts.Progress = func(done, total int64) {
		bar.setTotal(total)
		bar.set(done)
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := log.Verify(ctx, opts)
	bar.done()
	if err != nil {
		return err
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		for _, f := range rep.Findings {
			fmt.Fprintln(stdout, cell(f.String()))
		}
		state := "clean"
		if !rep.Clean {
			state = fmt.Sprintf("NOT clean: %d findings", len(rep.Findings))
		}
		fmt.Fprintf(stdout, "verify: %s; %d checkpoints, %d trees, %d leaves (%d changed by erasures), %d sealed months, %d events not covered yet\n",
			state, rep.Checkpoints, rep.Trees, rep.Leaves, rep.Erased, rep.Sealed, rep.Pending)
	}
	if !rep.Clean {
		return errTampered
	}
	return nil
}

func runProve(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("prove", `Print, as JSON, an inclusion proof of one event against the newest checkpoint
(--event ID), or a consistency proof between two checkpoints (--consistency
OLD NEW, their ids). auditlog verify-proof checks either without a database.`, getenv, &cfg, stdout, stderr)
	fs.operands = 2
	event := fs.Int64("event", 0, 1, "the event id to prove")
	consistency := fs.Bool("consistency", false, "prove checkpoint NEW extends checkpoint OLD (two ids follow)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	// The command line is checked whole before anything connects.
	var ids [2]int64
	switch {
	case *consistency && *event != 0:
		return usagef("prove: give --event ID or --consistency OLD NEW, not both")
	case *consistency:
		if fs.NArg() != 2 {
			return usagef("prove --consistency needs two checkpoint ids: OLD NEW")
		}
		for i := range ids {
			n, err := strconv.ParseInt(fs.Arg(i), 10, 64)
			if err != nil || n <= 0 {
				return usagef("prove --consistency: %q is not a checkpoint id", fs.Arg(i))
			}
			ids[i] = n
		}
		if ids[0] > ids[1] {
			return usagef("prove --consistency: checkpoint %d is newer than checkpoint %d: give OLD first", ids[0], ids[1])
		}
	case *event > 0:
		if fs.NArg() != 0 {
			return usagef("unexpected argument %q (see -h)", fs.Arg(0))
		}
	default:
		return usagef("prove needs --event ID or --consistency OLD NEW")
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if *consistency {
		p, err := log.ProveConsistency(ctx, ids[0], ids[1])
		if err != nil {
			return err
		}
		return enc.Encode(p)
	}
	p, err := log.ProveEvent(ctx, *event)
	if err != nil {
		return err
	}
	return enc.Encode(p)
}

func runVerifyProof(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("verify-proof", `Check a proof from auditlog prove (a file, or - for stdin) against its signed
checkpoint with the verifier key alone: no database is opened. Exits 0 when
it checks, 1 when it does not.`, getenv, &cfg, stdout, stderr)
	fs.operands = 1
	key := fs.String("key", "", "the verifier key, or a file holding it (default: the integrity key's)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("verify-proof needs the proof file (or -)")
	}
	v, err := verifierFrom(*key, &cfg)
	if err != nil {
		return err
	}
	var data []byte
	if fs.Arg(0) == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	} else {
		data, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		return usagef("verify-proof: %v", err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return usagef("verify-proof: not a proof: %v", err)
	}
	if _, ok := probe["event_id"]; ok {
		var p service.InclusionProof
		if err := json.Unmarshal(data, &p); err != nil {
			return usagef("verify-proof: not an inclusion proof: %v", err)
		}
		if err := service.VerifyInclusion(&p, v); err != nil {
			fmt.Fprintf(stdout, "verify-proof: REJECTED: %v\n", err)
			return errTampered
		}
		fmt.Fprintf(stdout, "verify-proof: event %d is leaf %d of tree %s (%d leaves) as the checkpoint signs\n", p.EventID, p.Index, p.Tree, p.TreeSize)
		return nil
	}
	var p service.ConsistencyProof
	if err := json.Unmarshal(data, &p); err != nil || p.Old == "" || p.New == "" {
		return usagef("verify-proof: neither an inclusion nor a consistency proof")
	}
	if err := service.VerifyConsistency(&p, v); err != nil {
		fmt.Fprintf(stdout, "verify-proof: REJECTED: %v\n", err)
		return errTampered
	}
	fmt.Fprintf(stdout, "verify-proof: the newer checkpoint extends the older one (%d trees)\n", len(p.Trees))
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
