package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// inspectDataplaneConfigDump prints one dataplane's xDS configuration.
func inspectDataplaneConfigDump(ctx context.Context, a *App, mesh, name, out string) error {
	if err := checkFormat(out); err != nil {
		return err
	}
	if mesh == "" {
		mesh = DefaultMesh
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	data, err := c.ConfigDump(ctx, mesh, name)
	if err != nil {
		return fmt.Errorf("inspect dataplane %s/%s --config-dump: %w", mesh, name, err)
	}
	switch out {
	case formatJSON:
		return writeJSON(a.Stdout, data)
	case formatYAML:
		return writeYAML(a.Stdout, data)
	}
	var dump struct {
		Source             string   `json:"source"`
		InstanceID         string   `json:"instanceId"`
		ConnectedInstances []string `json:"connectedInstances"`
		ProxyKind          string   `json:"proxyKind"`
		Truncated          bool     `json:"truncated"`
		Error              string   `json:"error"`
		Types              []struct {
			TypeURL   string            `json:"typeUrl"`
			Version   string            `json:"version"`
			State     string            `json:"state"`
			LastError string            `json:"lastError"`
			Total     int               `json:"total"`
			Resources []json.RawMessage `json:"resources"`
		} `json:"types"`
	}
	if err := json.Unmarshal(data, &dump); err != nil {
		return fmt.Errorf("config dump: %w", err)
	}
	connected := strings.Join(dump.ConnectedInstances, ",")
	if connected == "" {
		connected = "none"
	}
	fmt.Fprintf(a.Stdout, "dataplane %s/%s (%s): %s by xds-server %s; connected to: %s\n", mesh, name, dump.ProxyKind, dump.Source, dump.InstanceID, connected)
	if dump.Error != "" {
		fmt.Fprintf(a.Stdout, "no configuration: %s\n", dump.Error)
	}
	tb := newTable(a.Stdout, "TYPE", "VERSION", "STATE", "RESOURCES", "LAST ERROR")
	for _, t := range dump.Types {
		typ := t.TypeURL[strings.LastIndexByte(t.TypeURL, '.')+1:]
		state := t.State
		if state == "" {
			state = "-"
		}
		tb.row(typ, t.Version, state, fmt.Sprint(t.Total), t.LastError)
	}
	if err := tb.flush(); err != nil {
		return err
	}
	if dump.Truncated {
		fmt.Fprintln(a.Stdout, "(some resources were left out to bound the answer's size)")
	}
	return nil
}
