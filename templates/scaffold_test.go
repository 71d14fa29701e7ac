package templates

import (
	"bytes"
	"fmt"
	"go/format"
	"go/token"
	"slices"
	"strings"
	"testing"
)

func TestCheckChannelName(t *testing.T) {
	for _, name := range []string{"room", "chat_room", "a", "a1", "game2_x", "x_y_z", "linux", "tests", "test_suite",
		"go", "type", strings.Repeat("x", 40)} {
		if err := CheckChannelName(name); err != nil {
			t.Errorf("CheckChannelName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "Room", "chat-room", "chat room", "9lives", "_x", "x_", "a__b", "x_test",
		"x_linux", "x_darwin", "x_windows", "x_js", "x_wasip1", "x_amd64", "x_arm64", "x_wasm", "x_386",
		"a_1", "a.b", "ñ", strings.Repeat("x", 41)} {
		err := CheckChannelName(name)
		if err == nil {
			t.Errorf("CheckChannelName(%q) accepted it", name)
		} else if !strings.HasPrefix(err.Error(), "templates: invalid channel name") {
			t.Errorf("CheckChannelName(%q): error %q lacks its prefix", name, err)
		}
	}
}

func TestCheckAppNameAndModule(t *testing.T) {
	for _, name := range []string{"app", "my_app", "my-app", "a1"} {
		if err := CheckAppName(name); err != nil {
			t.Errorf("CheckAppName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "App", "1app", "-app", "my app", "a/b", "..", strings.Repeat("a", 65)} {
		if CheckAppName(name) == nil {
			t.Errorf("CheckAppName(%q) accepted it", name)
		}
	}
	for _, p := range []string{"app", "example.com/me/app", "github.com/me/my-app/v2", "x.y/a_b~c"} {
		if err := CheckModulePath(p); err != nil {
			t.Errorf("CheckModulePath(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "/app", "app/", "a//b", "a/./b", "a/../b", "a b", "a/b.", `a\b`, "a@v1"} {
		if CheckModulePath(p) == nil {
			t.Errorf("CheckModulePath(%q) accepted it", p)
		}
	}
}

func TestChannelName(t *testing.T) {
	for arg, want := range map[string]string{
		"room": "room", "Room": "room", "ChatRoom": "chat_room", "chatRoom": "chat_room", "chat_room": "chat_room",
		"HTTPLog": "http_log", "Game2": "game2", "Game2Lobby": "game2_lobby", "URL": "url", "Chat_Room": "chat_room",
	} {
		got, err := ChannelName(arg)
		if err != nil || got != want {
			t.Errorf("ChannelName(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	for _, arg := range []string{"", "2Room", "Chat-Room", "ChatLinux", "Room_", "Chat__Room", "RoomTest", "Chät"} {
		if got, err := ChannelName(arg); err == nil {
			t.Errorf("ChannelName(%q) = %q, want an error", arg, got)
		}
	}
}

func TestChannelIdentifiers(t *testing.T) {
	names := []string{"room", "chat_room", "chatroom", "chat_rooms", "a1", "a1b", "a_b", "ab", "go", "type", "x_y_z", "xy_z"}
	seen := map[string]string{}
	for _, name := range names {
		d := ChannelData{Name: name, Module: "example.com/app"}
		for _, id := range append(d.Identifiers(), d.Pascal()) {
			if !token.IsIdentifier(id) {
				t.Errorf("%s: %q is not a Go identifier", name, id)
			}
			if other, dup := seen[id]; dup {
				t.Errorf("%q and %q both declare %s", other, name, id)
			}
			seen[id] = name
		}
	}
}

func ExampleChannelData() {
	d := ChannelData{Name: "chat_room"}
	fmt.Println(d.Topic(), d.Pascal(), d.Type(), d.Ctor())
	// Output: chat_room:* ChatRoom ChatRoomChannel newChatRoomChannel
}

func TestApp(t *testing.T) {
	files, err := App(AppData{
		Name: "myapp", Module: "example.com/myapp", GoVersion: "1.26.0",
		Requires: []Require{{Path: "github.com/go-chi/chi/v5", Version: "v5.5.0"}},
		Replace:  "/src/my hearth",
	})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	byPath := map[string][]byte{}
	for _, f := range files {
		paths = append(paths, f.Path)
		byPath[f.Path] = f.Data
		if bytes.Contains(f.Data, []byte("{{.")) || bytes.Contains(f.Data, []byte("{{-")) || bytes.Contains(f.Data, []byte("<no value>")) {
			t.Errorf("%s: template text left in the output", f.Path)
		}
		if strings.HasSuffix(f.Path, ".go") {
			formatted, err := format.Source(f.Data)
			if err != nil || !bytes.Equal(formatted, f.Data) {
				t.Errorf("%s is not gofmt-formatted (%v)", f.Path, err)
			}
		}
	}
	want := []string{
		".dockerignore", ".gitignore", "Dockerfile", "README.md", "app.go", "assets/room.ts", "channels/channels.go", "channels/events_test.go",
		"channels/room_channel.go", "channels/room_channel_test.go", "channels/socket.go", "go.mod",
		"main.go", "main_test.go", "static/app.js", "static/index.html", "static/style.css",
	}
	slices.Sort(paths)
	if !slices.Equal(paths, want) {
		t.Errorf("App wrote\n  %s\nwant\n  %s", strings.Join(paths, "\n  "), strings.Join(want, "\n  "))
	}
	gomod := string(byPath["go.mod"])
	for _, line := range []string{"module example.com/myapp\n", "go 1.26.0\n", "\tgithub.com/go-chi/chi/v5 v5.5.0\n",
		"replace github.com/hearth-rt/hearth => \"/src/my hearth\"\n"} {
		if !strings.Contains(gomod, line) {
			t.Errorf("go.mod lacks %q:\n%s", line, gomod)
		}
	}
	if !bytes.Contains(byPath["app.go"], []byte(`"example.com/myapp/channels"`)) {
		t.Error("app.go does not import the app's channels package")
	}
	if !bytes.Contains(byPath["static/index.html"], []byte("<title>myapp</title>")) {
		t.Error("index.html is not titled after the app")
	}

	plain, err := App(AppData{Name: "myapp", Module: "myapp", GoVersion: "1.26.0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range plain {
		if f.Path == "go.mod" && (strings.Contains(string(f.Data), "replace") || strings.Contains(string(f.Data), "require")) {
			t.Errorf("go.mod without requires or replace:\n%s", f.Data)
		}
	}
}

func TestChannelPresence(t *testing.T) {
	for _, p := range []bool{false, true} {
		files, err := Channel(ChannelData{Name: "lounge", Module: "example.com/app", Presence: p})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f.Path, ".go") && p != bytes.Contains(f.Data, []byte("presence")) {
				t.Errorf("presence=%v: %s mentions presence: %v", p, f.Path, !p)
			}
			if strings.HasSuffix(f.Path, ".go") {
				if formatted, err := format.Source(f.Data); err != nil || !bytes.Equal(formatted, f.Data) {
					t.Errorf("presence=%v: %s is not gofmt-formatted (%v)", p, f.Path, err)
				}
			}
		}
	}
}

func TestChannel(t *testing.T) {
	for _, intercept := range []bool{false, true} {
		files, err := Channel(ChannelData{Name: "chat_room", Module: "example.com/app", Intercept: intercept})
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range files {
			paths = append(paths, f.Path)
			// (The TypeScript gets the field from assets/events.gen.ts.)
			if strings.HasSuffix(f.Path, ".go") && intercept != bytes.Contains(f.Data, []byte("mine")) {
				t.Errorf("intercept=%v: %s mentions mine: %v", intercept, f.Path, !intercept)
			}
		}
		slices.Sort(paths)
		if want := []string{"assets/chat_room.ts", "channels/chat_room_channel.go", "channels/chat_room_channel_test.go"}; !slices.Equal(paths, want) {
			t.Errorf("Channel wrote %v, want %v", paths, want)
		}
	}
	if _, err := Channel(ChannelData{Name: "chat_linux", Module: "example.com/app"}); err == nil {
		t.Error("Channel rendered an invalid name")
	}
}
