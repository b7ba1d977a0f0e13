{{- define "xds-server.caAddress" -}}
{{- default (printf "%s-ca-service:5679" .Release.Name) .Values.caAddress -}}
{{- end -}}
