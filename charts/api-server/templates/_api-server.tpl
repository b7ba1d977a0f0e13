{{- define "api-server.check" -}}
{{- if and (eq (include "weft.mode" .) "zone") (not (include "weft.zone" .)) -}}
{{- fail "api-server: mode zone needs a zone name (zone or global.zone)" -}}
{{- end -}}
{{- end -}}
