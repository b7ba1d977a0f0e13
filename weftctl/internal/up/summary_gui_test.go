package up

import (
	"strings"
	"testing"
)

// The summary prints each control plane's GUI and a sign-in link carrying
// the first control plane's admin token.
func TestSummaryPrintsTheGUISignInLink(t *testing.T) {
	var b strings.Builder
	printSummary(&b, Endpoints{ControlPlanes: []Endpoint{
		{Name: "global", Mode: "global", APIURL: "http://127.0.0.1:5681", AdminToken: "tok.global"},
		{Name: "zone-1", Mode: "zone", APIURL: "http://127.0.0.1:5781", AdminToken: "tok.zone"},
	}}, "endpoints.json")
	out := b.String()
	for _, want := range []string{"web GUI       http://127.0.0.1:5681/gui/\n", "web GUI       http://127.0.0.1:5781/gui/\n", "\n  http://127.0.0.1:5681/gui/?token=tok.global\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
