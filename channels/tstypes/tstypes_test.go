package tstypes

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hearth-rt/hearth/channels"
)

type Base struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

type Node struct {
	Base
	Version  string            `json:"version"` // shallower: wins over Base's
	Children []*Node           `json:"children,omitempty"`
	Parent   *Node             `json:"parent"`
	Meta     map[string]any    `json:"meta,omitempty"`
	Raw      json.RawMessage   `json:"raw"`
	Blob     []byte            `json:"blob"`
	Skip     string            `json:"-"`
	NoTag    bool              //
	Fixed    [2]float64        `json:"fixed"`
	Weird    string            `json:"a-b"`
	Anon     struct{ X int }   `json:"anon"`
	Counts   map[string][]int  `json:"counts"`
	Status   Status            `json:"status"`
	Inner    *struct{ Y bool } `json:"inner,omitzero"`
	_        int
}

type Status string

func TestGenerate(t *testing.T) {
	events := []channels.ChannelEvents{{Pattern: "tree:*", Events: []channels.Event{
		channels.Emits[Node]("node"),
		channels.HandleIn("get", func(context.Context, *channels.Channel, struct{}) ([]Node, error) { return nil, nil }),
	}}}
	var b strings.Builder
	if err := Generate(&b, events); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"export interface Node {\n  id: string\n  version: string\n  children?: (Node | null)[]\n  parent: Node | null\n",
		"  meta?: Record<string, unknown>\n  raw: unknown\n  blob: string\n  NoTag: boolean\n  fixed: number[]\n  \"a-b\": string\n",
		"  anon: {\n  X: number\n}\n",
		"  counts: Record<string, number[] | null> | null\n  status: Status\n  inner?: {\n  Y: boolean\n}\n}\n",
		"export type Status = string\n",
		"export interface TreeEvents {",
		"get: { payload: Record<string, never>; reply: Node[] | null }",
		"node: Node\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"Skip"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, out)
		}
	}
	var again strings.Builder
	if err := Generate(&again, events); err != nil || again.String() != out {
		t.Errorf("a second run differs (%v)", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	var b strings.Builder
	err := Generate(&b, []channels.ChannelEvents{{Pattern: "x:*", Events: []channels.Event{channels.Emits[chan int]("c")}}})
	if err == nil || !strings.Contains(err.Error(), "chan int cannot be encoded as JSON") {
		t.Errorf("chan payload: %v", err)
	}
	err = Generate(&b, []channels.ChannelEvents{{Pattern: "a_b:*"}, {Pattern: "a-b:*"}})
	if err == nil || !strings.Contains(err.Error(), "both make ABEvents") {
		t.Errorf("clashing patterns: %v", err)
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{"room:*": "Room", "chat_room:*": "ChatRoom", "room:lobby": "RoomLobby", "42:*": "Topic42"} {
		if got := patternName(in); got != want {
			t.Errorf("patternName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitize(reflect.TypeFor[Page[Status]]().Name()); got != "PageGithubComHearthRtHearthChannelsTstypesStatus" {
		t.Errorf("generic name %q", got)
	}
}

type Page[T any] struct{ Items []T }
