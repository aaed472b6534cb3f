package plugins

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// responder notes its OnHTTPResponse calls and adds its name to a field,
// so the test sees both the order and that edits reach the next one.
type responder struct {
	name string
	log  *[]string
	err  error
	boom bool
}

func (r *responder) Name() string { return r.name }
func (r *responder) OnHTTPResponse(_ *Session, _ *http.Request, resp *http.Response) error {
	*r.log = append(*r.log, r.name)
	if r.boom {
		panic("boom")
	}
	resp.Header.Add("X-Seen", r.name)
	return r.err
}

func TestChainHTTPResponse(t *testing.T) {
	tests := []struct {
		name     string
		ps       func(log *[]string) []Plugin
		wantLog  []string
		wantSeen []string
		wantErr  bool
		wantCode Code
		panicked bool
	}{
		{name: "config order", ps: func(log *[]string) []Plugin {
			return []Plugin{&responder{name: "a", log: log}, connectOnly{"c"}, &responder{name: "b", log: log}}
		}, wantLog: []string{"a", "b"}, wantSeen: []string{"a", "b"}},
		{name: "reject stops the chain", ps: func(log *[]string) []Plugin {
			return []Plugin{&responder{name: "a", log: log, err: Reject(CodeForbidden, "no")}, &responder{name: "b", log: log}}
		}, wantLog: []string{"a"}, wantSeen: []string{"a"}, wantErr: true, wantCode: CodeForbidden},
		{name: "panic is a HookError", ps: func(log *[]string) []Plugin {
			return []Plugin{&responder{name: "a", log: log, boom: true}, &responder{name: "b", log: log}}
		}, wantLog: []string{"a"}, wantErr: true, wantCode: CodeGeneral, panicked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			c := NewChain(tt.ps(&log))
			if !c.HasHTTPResponders() {
				t.Fatal("HasHTTPResponders = false")
			}
			resp := &http.Response{StatusCode: 200, Header: http.Header{}}
			err := c.HTTPResponse(&Session{}, &http.Request{}, resp)
			if !slices.Equal(log, tt.wantLog) || !slices.Equal(resp.Header["X-Seen"], tt.wantSeen) {
				t.Fatalf("calls %v, X-Seen %v; want %v, %v", log, resp.Header["X-Seen"], tt.wantLog, tt.wantSeen)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			var he *HookError
			if !errors.As(err, &he) || he.Plugin != "a" || he.Hook != "OnHTTPResponse" || CodeOf(err) != tt.wantCode {
				t.Fatalf("got %v, want a HookError from a with code %v", err, tt.wantCode)
			}
			if tt.panicked != (he.Stack != nil && strings.Contains(err.Error(), "panic")) {
				t.Fatalf("panic recorded %v, want %v: %v", he.Stack != nil, tt.panicked, err)
			}
		})
	}
}

func TestChainNoHTTPResponders(t *testing.T) {
	var nilChain *Chain
	if nilChain.HasHTTPResponders() || NewChain([]Plugin{connectOnly{"c"}}).HasHTTPResponders() {
		t.Fatal("HasHTTPResponders without a responder")
	}
	if err := nilChain.HTTPResponse(nil, nil, nil); err != nil {
		t.Fatal(err)
	}
}
