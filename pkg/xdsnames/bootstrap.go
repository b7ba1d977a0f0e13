package xdsnames

// GRPCBootstrapFile is the grpc-go xDS bootstrap weft-dp writes in its
// workdir (--proxy-type grpc); the injection webhook points the
// application's GRPC_XDS_BOOTSTRAP at it.
const GRPCBootstrapFile = "bootstrap.json"
