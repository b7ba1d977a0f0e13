{{- define "xds-server.caAddress" -}}
{{- default (printf "%s-ca-service:5679" .Release.Name) .Values.caAddress -}}
{{- end -}}

{{- define "xds-server.tlsHostnames" -}}
{{- if .Values.tlsHostnames -}}
{{- join "," .Values.tlsHostnames -}}
{{- else -}}
{{- $n := include "weft.fullname" . -}}
{{- printf "%s,%s.%s,%s.%s.svc" $n $n .Release.Namespace $n .Release.Namespace -}}
{{- end -}}
{{- end -}}
