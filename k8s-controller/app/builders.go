package app

// builders are the controller's parts, in the order they are built. A new
// part (pods → Dataplanes, the injection webhook) adds its Builder here.
func builders() []Builder {
	return []Builder{buildCRSync, buildValidatingWebhook, buildPods, buildInjector}
}
