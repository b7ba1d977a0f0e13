{{- define "api-server.check" -}}
{{- if and (eq (include "weft.mode" .) "zone") (not (include "weft.zone" .)) -}}
{{- fail "api-server: mode zone needs a zone name (zone or global.zone)" -}}
{{- end -}}
{{- end -}}

{{- define "api-server.xdsAddress" -}}
{{- if .Values.xdsAddress -}}
{{- .Values.xdsAddress -}}
{{- else if ne (include "weft.mode" .) "global" -}}
{{- printf "dns:///%s-xds-server:5678" .Release.Name -}}
{{- end -}}
{{- end -}}
