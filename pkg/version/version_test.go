package version

import (
	"regexp"
	"testing"
)

// The version is semver-shaped (with an optional v), the scheme both
// weftctl and the control plane print.
func TestVersionScheme(t *testing.T) {
	if !regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(Version) {
		t.Fatalf("Version %q is not semver", Version)
	}
}
