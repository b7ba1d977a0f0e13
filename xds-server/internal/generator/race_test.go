//go:build race

package generator

// raceEnabled: the race detector slows generation ~10×, so the randomized
// equivalence tests run fewer seeds under it (the same code paths).
const raceEnabled = true
