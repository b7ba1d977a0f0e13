package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DataplaneCheckEvery is how often weft-dp asks the api-server whether its
// Dataplane still exists. The xds-server keeps serving a proxy's last
// configuration when its Dataplane or mesh is deleted, and says nothing on
// the stream: only the API can tell.
var DataplaneCheckEvery = 10 * time.Second

// watchDataplane polls GET <api-url>/meshes/<mesh>/dataplanes/<name> with
// the dataplane token (which may read its own Dataplane) and logs, once per
// change: waiting for the Dataplane, the Dataplane registered, the
// Dataplane (or its mesh) deleted. An unreachable or refusing api-server
// is said once at debug: the API is optional for a proxy.
func watchDataplane(ctx context.Context, apiURL, mesh, name, token string, log *slog.Logger) {
	u := strings.TrimRight(apiURL, "/") + "/meshes/" + url.PathEscape(mesh) + "/dataplanes/" + url.PathEscape(name)
	client := &http.Client{Timeout: 5 * time.Second}
	state := "" // "exists", "missing" or "unknown"
	for {
		now := checkDataplane(ctx, client, u, token)
		if now != state {
			switch {
			case now == "missing" && state == "exists":
				log.Info("the Dataplane was deleted (or its mesh): the xds-server keeps the last configuration it sent; register the Dataplane again, or stop weft-dp", "mesh", mesh, "dataplane", name, "api", apiURL)
			case now == "missing":
				log.Info("waiting for the Dataplane: it is not registered; register it with weftctl apply -f, or run weft-dp with --dataplane-file", "mesh", mesh, "dataplane", name, "api", apiURL)
			case now == "exists" && state == "missing":
				log.Info("the Dataplane is registered", "mesh", mesh, "dataplane", name)
			case now == "unknown":
				log.Debug("cannot ask the api-server whether the Dataplane exists (set --api-url to the control plane's REST API to be told when it is deleted)", "api", apiURL)
			}
			state = now
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(DataplaneCheckEvery):
		}
	}
}

func checkDataplane(ctx context.Context, client *http.Client, u, token string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "unknown"
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return "unknown"
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		return "exists"
	case http.StatusNotFound:
		return "missing"
	}
	return "unknown"
}
