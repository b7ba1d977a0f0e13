// Package chartstest holds the CI checks of Weft's deployables: every Helm
// chart under charts/ is linted and rendered with its default, global, zone
// and HA values, the renders are compared with golden files and decoded
// strictly into k8s.io/api types, wrong values must fail with the schema's
// message, each service binary must build static, and each Dockerfile and
// systemd unit under deploy/ must reference paths and flags that exist.
//
// helm is taken from $HELM, else ${WEFT_CACHE:-$HOME/.cache/weft}/bin/helm,
// else PATH; charts/test.sh installs it there. Without helm the chart tests
// skip with a message. The weft.* helpers are the weft-lib library chart
// every service chart depends on; the tests vendor it (helm dependency build,
// offline) in a temporary copy of charts/. UPDATE=1 (or -update) rewrites
// the golden files and re-syncs the shared schema definitions into every
// chart.
package chartstest
