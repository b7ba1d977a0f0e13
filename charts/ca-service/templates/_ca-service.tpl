{{- define "ca-service.tlsHostnames" -}}
{{- if .Values.tlsHostnames -}}
{{- join "," .Values.tlsHostnames -}}
{{- else -}}
{{- $n := include "weft.fullname" . -}}
{{- printf "%s,%s.%s,%s.%s.svc" $n $n .Release.Namespace $n .Release.Namespace -}}
{{- end -}}
{{- end -}}
