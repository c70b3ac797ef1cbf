package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/auditlog/auditlog/service"
)

// errHelp is what parse returns after printing a command's help for -h,
// --help or `help CMD`: run exits 0 without doing anything else.
var errHelp = errors.New("help requested")

// flagSet is a command's flags. Its typed flags (Bool, Int, Duration, Time,
// ...) refuse a bad value with a plain message naming the flag, the words
// the web uses for the same mistake, instead of Go's parse errors.
type flagSet struct {
	*flag.FlagSet
	stdout io.Writer
	// summary is the command's help text above its flags.
	summary string
	// bad is the first value a flag refused.
	bad error
	// operands is how many positional arguments the command takes
	// (`catalog check FILE`); any more is a usage error.
	operands int
}

func newFlags(name, summary string, stdout io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("auditlog "+name, flag.ContinueOnError), stdout: stdout, summary: summary}
	// parse prints help and errors itself: help on stdout, errors once.
	fs.SetOutput(io.Discard)
	return fs
}

// printHelp writes the command's usage, summary and flags to stdout.
func (f *flagSet) printHelp() {
	fmt.Fprintf(f.stdout, "Usage: %s [flags]\n", f.Name())
	if f.summary != "" {
		fmt.Fprintf(f.stdout, "\n%s\n", strings.TrimSpace(f.summary))
	}
	fmt.Fprintf(f.stdout, "\nFlags:\n")
	f.SetOutput(f.stdout)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// refuse records and returns a usage error for flag name's value.
func (f *flagSet) refuse(name, format string, args ...any) error {
	err := usagef("--%s: %s", name, fmt.Sprintf(format, args...))
	if f.bad == nil {
		f.bad = err
	}
	return err
}

// parse parses args: -h and --help print the help and return errHelp; a
// bad flag or value, or a positional argument beyond operands, is a usage
// error. A command that takes operands takes flags after them too
// (`verify-proof FILE --key VKEY`), until "--".
func (f *flagSet) parse(args []string) error {
	var operands []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printHelp()
				return errHelp
			}
			if f.bad != nil {
				return f.bad
			}
			return &usageError{msg: err.Error() + " (see -h)"}
		}
		rest := f.Args()
		ended := len(rest) < len(args) && args[len(args)-len(rest)-1] == "--"
		if f.operands == 0 || len(rest) == 0 || ended {
			operands = append(operands, rest...)
			break
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
	if len(operands) > f.operands {
		return usagef("unexpected argument %q (see -h)", operands[f.operands])
	}
	// f.Args() is what the command reads: the operands alone.
	_ = f.Parse(append([]string{"--"}, operands...))
	return nil
}

type boolValue struct {
	p    *bool
	name string
	fs   *flagSet
}

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return v.fs.refuse(v.name, "%q is not true or false", s)
	}
	*v.p = b
	return nil
}

func (v *boolValue) String() string {
	if v == nil || v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}

func (v *boolValue) IsBoolFlag() bool { return true }

// BoolVar defines a boolean flag (--name, --name=false).
func (f *flagSet) BoolVar(p *bool, name string, value bool, usage string) {
	*p = value
	f.Var(&boolValue{p: p, name: name, fs: f}, name, usage)
}

// Bool defines a boolean flag.
func (f *flagSet) Bool(name string, value bool, usage string) *bool {
	p := new(bool)
	f.BoolVar(p, name, value, usage)
	return p
}

type intValue struct {
	p    *int64
	min  int64
	name string
	fs   *flagSet
	// also, when set, mirrors the value into an int.
	also *int
}

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < v.min {
		return v.fs.refuse(v.name, "%q is not a whole number of at least %d", s, v.min)
	}
	*v.p = n
	if v.also != nil {
		*v.also = int(n)
	}
	return nil
}

func (v *intValue) String() string {
	if v == nil || v.p == nil {
		return "0"
	}
	return strconv.FormatInt(*v.p, 10)
}

// IntVar defines a whole-number flag whose value must be at least min.
func (f *flagSet) IntVar(p *int, name string, value, min int, usage string) {
	*p = value
	v := int64(value)
	f.Var(&intValue{p: &v, min: int64(min), name: name, fs: f, also: p}, name, usage)
}

// Int defines a whole-number flag whose value must be at least min.
func (f *flagSet) Int(name string, value, min int, usage string) *int {
	p := new(int)
	f.IntVar(p, name, value, min, usage)
	return p
}

// Int64 defines a whole-number flag whose value must be at least min.
func (f *flagSet) Int64(name string, value, min int64, usage string) *int64 {
	p := new(int64)
	*p = value
	f.Var(&intValue{p: p, min: min, name: name, fs: f}, name, usage)
	return p
}

type durationValue struct {
	p    *time.Duration
	name string
	fs   *flagSet
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return v.fs.refuse(v.name, "%q is not a positive duration such as 90s, 10m or 1h", s)
	}
	*v.p = d
	return nil
}

func (v *durationValue) String() string {
	if v == nil || v.p == nil {
		return "0s"
	}
	return v.p.String()
}

// Duration defines a flag holding a positive duration.
func (f *flagSet) Duration(name string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = value
	f.Var(&durationValue{p: p, name: name, fs: f}, name, usage)
	return p
}

type timeValue struct {
	p    *time.Time
	name string
	fs   *flagSet
}

func (v *timeValue) Set(s string) error {
	if s == "" { // --since= is no bound, as ?since= is
		*v.p = time.Time{}
		return nil
	}
	t, err := service.ParseTime(v.name, s)
	if err != nil {
		return v.fs.refuse(v.name, "%s", detail(err))
	}
	*v.p = t
	return nil
}

func (v *timeValue) String() string {
	if v == nil || v.p == nil || v.p.IsZero() {
		return ""
	}
	return v.p.Format(time.RFC3339)
}

// Time defines a flag holding a time: RFC 3339 or YYYY-MM-DD, as the
// web's filters take it (service.ParseTime).
func (f *flagSet) Time(name, usage string) *time.Time {
	p := new(time.Time)
	f.Var(&timeValue{p: p, name: name, fs: f}, name, usage)
	return p
}

// detail is a service validation error's message without its field name,
// so the CLI can name the flag instead.
func detail(err error) string {
	var ve *service.ValidationError
	if errors.As(err, &ve) {
		return strings.TrimPrefix(ve.Error(), ve.Field+": ")
	}
	return err.Error()
}

// flagError turns a service validation error about one of the command's
// values into a usage error naming the flag it came from: fields maps the
// service's field names to flags where they differ ("user_id" to
// "subject"); otherwise the flag is the field with '-' for '_'. Any other
// error is returned as it is.
func flagError(err error, fields map[string]string) error {
	var ve *service.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	name, ok := fields[ve.Field]
	if !ok {
		name = strings.ReplaceAll(ve.Field, "_", "-")
	}
	return &usageError{msg: "--" + name + ": " + detail(err), err: err}
}
