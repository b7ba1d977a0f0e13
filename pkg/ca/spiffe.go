package ca

// SPIFFEID is the identity of a service in a mesh: the URI SAN ca-service
// puts in workload certificates and the principal the xds-server's RBAC and
// TLS validation match. Both use this one definition.
// SPIFFEID(mesh, "") is the prefix every identity of the mesh starts with.
func SPIFFEID(mesh, service string) string { return "spiffe://" + mesh + "/" + service }
