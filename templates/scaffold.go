package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// The scaffolding of `hearth new` (app/) and `hearth gen channel`
// (channel/). Every file is a text/template named like its output with
// ".tmpl" appended, so that no embedded file is compiled or taken for a
// go.mod. In paths, "NAME" stands for the channel's name, "gitignore" and
// "dockerignore" for ".gitignore" and ".dockerignore".
//
//go:embed app channel
var scaffold embed.FS

// File is one file of a scaffold.
type File struct {
	// Path is slash-separated and relative to the application's root.
	Path string
	Data []byte
}

// Require is one requirement of a generated go.mod.
type Require struct {
	Path, Version string
}

// AppData fills the templates of `hearth new`.
type AppData struct {
	// Name names the application: its directory, binary and page title.
	// It must pass [CheckAppName].
	Name string
	// Module is the Go module path. It must pass [CheckModulePath].
	Module string
	// GoVersion is the go directive of go.mod, e.g. "1.26.0".
	GoVersion string
	// Requires are the requirements of go.mod. A missing one is added by
	// `go mod tidy`.
	Requires []Require
	// Replace, if set, is a directory that replaces the Hearth module
	// (a checkout of github.com/hearth-rt/hearth).
	Replace string
}

// ChannelData fills the templates of `hearth gen channel`.
type ChannelData struct {
	// Name is the channel's name: its topic prefix ("chat_room" handles
	// "chat_room:*") and file name. It must pass [CheckChannelName].
	Name string
	// Module is the application's module path, for imports.
	Module string
	// Intercept adds an Out handler that rewrites each broadcast for its
	// subscriber.
	Intercept bool
	// Presence tracks the joined users with the app's Deps.Presence, so
	// that clients see who is in the topic (presence_state, presence_diff).
	Presence bool
}

// Pascal returns the name as an exported Go identifier: "chat_room" is
// "ChatRoom".
func (c ChannelData) Pascal() string {
	var b strings.Builder
	for _, part := range strings.Split(c.Name, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// Camel returns the name as an unexported Go identifier stem: "chat_room"
// is "chatRoom". It may be a keyword ("go"), so it is only used with a
// suffix.
func (c ChannelData) Camel() string {
	p := c.Pascal()
	return strings.ToLower(p[:1]) + p[1:]
}

// Type is the handler's type, named as Phoenix names it: "ChatRoomChannel".
func (c ChannelData) Type() string { return c.Pascal() + "Channel" }

// Ctor is the handler's constructor: "newChatRoomChannel".
func (c ChannelData) Ctor() string { return "new" + c.Pascal() + "Channel" }

// Msg is the type of the channel's message as subscribers receive it:
// "ChatRoomMessage".
func (c ChannelData) Msg() string { return c.Pascal() + "Message" }

// In is the type of the message a client pushes: "ChatRoomNewMsg".
func (c ChannelData) In() string { return c.Pascal() + "NewMsg" }

// Test is the prefix of the channel's test functions: "TestChatRoomChannel".
func (c ChannelData) Test() string { return "Test" + c.Pascal() + "Channel" }

// Topic returns the channel's topic pattern: "chat_room:*".
func (c ChannelData) Topic() string { return c.Name + ":*" }

// Identifiers lists the package-level identifiers the channel's files
// declare (test functions included), to check them against the package's.
func (c ChannelData) Identifiers() []string {
	ids := []string{c.Type(), c.Ctor(), c.Msg(), c.In(), c.Camel() + "MaxBody", "new" + c.Pascal() + "Server"}
	for _, t := range channelTests {
		ids = append(ids, c.Test()+t)
	}
	return ids
}

// channelTests are the suffixes of the test functions in
// channel/channels/NAME_channel_test.go.tmpl.
var channelTests = []string{"Join", "NewMsg", "Ping", "UnknownEvent", "Presence"}

var (
	appNameRE     = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	channelNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	modulePathRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*$`)
)

// CheckAppName reports whether name can name an application: a lower-case
// letter, then lower-case letters, digits, '_' or '-', at most 64 bytes.
func CheckAppName(name string) error {
	if !appNameRE.MatchString(name) || len(name) > 64 {
		return fmt.Errorf("templates: invalid app name %q: use a lower-case letter, then lower-case letters, digits, '_' or '-' (at most 64), e.g. my_app", name)
	}
	return nil
}

// CheckModulePath reports whether p is a plausible Go module path:
// slash-separated elements of letters, digits and "._~-", no empty, "." or
// ".." element, no trailing slash.
func CheckModulePath(p string) error {
	if !modulePathRE.MatchString(p) || len(p) > 255 {
		return fmt.Errorf("templates: invalid module path %q: use elements of letters, digits and ._~- separated by '/', e.g. example.com/me/app", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." || strings.HasSuffix(el, ".") {
			return fmt.Errorf("templates: invalid module path %q: element %q", p, el)
		}
	}
	return nil
}

// CheckChannelName reports whether name can name a channel: a lower-case
// letter, then lower-case letters, digits and single '_' between words, at
// most 40 bytes, and not ending in a word that the go command reads as a
// build constraint or a test file ("_test", "_linux", "_amd64", ...).
func CheckChannelName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("templates: invalid channel name %q: %s", name, why)
	}
	switch {
	case name == "":
		return bad("empty")
	case !channelNameRE.MatchString(name):
		return bad("use a letter, then letters, digits and '_' (e.g. chat_room or ChatRoom)")
	case len(name) > 40:
		return bad("longer than 40 bytes")
	case strings.Contains(name, "__"), strings.HasSuffix(name, "_"):
		return bad("'_' must separate words (no doubled or trailing '_')")
	}
	if i := strings.LastIndexByte(name, '_'); i >= 0 {
		last := name[i+1:]
		if last == "test" || knownOS[last] || knownArch[last] {
			return bad(fmt.Sprintf("a file name ending in _%s is a test file or a build constraint for Go", last))
		}
	}
	// Every segment after the first must start with a letter so that the
	// Go identifiers of different names differ: "a_1" and "a1" would both
	// be A1.
	for _, part := range strings.Split(name, "_")[1:] {
		if part[0] >= '0' && part[0] <= '9' {
			return bad("each word after a '_' must start with a letter")
		}
	}
	return nil
}

// ChannelName turns what a user types after `hearth gen channel` into a
// channel name, as Phoenix's mix phx.gen.channel does: CamelCase is
// underscored ("Room" is "room", "ChatRoom" and "chatRoom" are
// "chat_room", "HTTPLog" is "http_log"), snake_case is kept. The result
// must still pass [CheckChannelName].
func ChannelName(arg string) (string, error) {
	var b strings.Builder
	r := []rune(arg)
	for i, c := range r {
		if c >= 'A' && c <= 'Z' {
			// A word starts at an upper-case letter after a lower-case
			// one or a digit, or before a lower-case one in a run of
			// capitals ("HTTPLog": "http" + "log").
			if i > 0 && r[i-1] != '_' && (isLowerOrDigit(r[i-1]) || i+1 < len(r) && r[i+1] >= 'a' && r[i+1] <= 'z' && r[i-1] >= 'A' && r[i-1] <= 'Z') {
				b.WriteByte('_')
			}
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	name := b.String()
	if err := CheckChannelName(name); err != nil {
		if name != arg {
			return "", fmt.Errorf("%w (from %q)", err, arg)
		}
		return "", err
	}
	return name, nil
}

func isLowerOrDigit(c rune) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// knownOS and knownArch are the GOOS and GOARCH values that make a file
// name suffix a build constraint (go/build's lists).
var (
	knownOS = set("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
		"linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos")
	knownArch = set("386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips",
		"mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv",
		"riscv64", "s390", "s390x", "sparc", "sparc64", "wasm")
)

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// App renders the application of `hearth new`, its first channel ("room")
// included. Go files come out gofmt-formatted.
func App(d AppData) ([]File, error) {
	if err := CheckAppName(d.Name); err != nil {
		return nil, err
	}
	if err := CheckModulePath(d.Module); err != nil {
		return nil, err
	}
	if d.GoVersion == "" {
		return nil, errors.New("templates: AppData.GoVersion is empty")
	}
	files, err := render("app", d, nil)
	if err != nil {
		return nil, err
	}
	room, err := Channel(ChannelData{Name: "room", Module: d.Module})
	if err != nil {
		return nil, err
	}
	return append(files, room...), nil
}

// Channel renders the files of `hearth gen channel`: the handler, its test
// and a TypeScript module using it.
func Channel(d ChannelData) ([]File, error) {
	if err := CheckChannelName(d.Name); err != nil {
		return nil, err
	}
	if err := CheckModulePath(d.Module); err != nil {
		return nil, err
	}
	return render("channel", d, strings.NewReplacer("NAME", d.Name))
}

func render(root string, data any, names *strings.Replacer) ([]File, error) {
	var files []File
	err := fs.WalkDir(scaffold, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")
		if names != nil {
			rel = names.Replace(rel)
		}
		if b := path.Base(rel); b == "gitignore" || b == "dockerignore" {
			rel = path.Join(path.Dir(rel), "."+b)
		}
		f, err := renderFile(p, rel, data)
		files = append(files, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// renderFile executes the template at src (a path in scaffold) into the
// file rel.
func renderFile(src, rel string, data any) (File, error) {
	text, err := scaffold.ReadFile(src)
	if err != nil {
		return File{}, fmt.Errorf("templates: %w", err)
	}
	t, err := template.New(src).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return File{}, fmt.Errorf("templates: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return File{}, fmt.Errorf("templates: %w", err)
	}
	b := out.Bytes()
	if strings.HasSuffix(rel, ".go") {
		if b, err = format.Source(b); err != nil {
			return File{}, fmt.Errorf("templates: %s does not parse: %w", rel, err)
		}
	}
	return File{Path: rel, Data: b}, nil
}

// ReplacePath returns Replace as go.mod writes it, quoted when needed.
func (d AppData) ReplacePath() string {
	for _, r := range d.Replace {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+~:\\", r)) {
			return strconv.Quote(d.Replace)
		}
	}
	return d.Replace
}
