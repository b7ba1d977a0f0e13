//go:build !unix

package up

// lockDataDir is a no-op where flock(2) does not exist.
func lockDataDir(string) (func(), error) { return func() {}, nil }
