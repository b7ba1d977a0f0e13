{{- /* zone-sync has no standalone mode: mode > global.mode > global. */ -}}
{{- define "zone-sync.mode" -}}
{{- $g := default dict .Values.global -}}
{{- $m := coalesce .Values.mode $g.mode "global" -}}
{{- if eq $m "standalone" }}global{{ else }}{{ $m }}{{ end -}}
{{- end -}}

{{- define "zone-sync.check" -}}
{{- if and (eq (include "zone-sync.mode" .) "global") (not .Values.tls.secretName) -}}
{{- fail "zone-sync: global mode needs tls.secretName (a kubernetes.io/tls Secret): zones connect over TLS" -}}
{{- end -}}
{{- if eq (include "zone-sync.mode" .) "zone" -}}
{{- if not (include "weft.zone" .) -}}
{{- fail "zone-sync: mode zone needs a zone name (zone or global.zone)" -}}
{{- end -}}
{{- if not .Values.globalAddress -}}
{{- fail "zone-sync: mode zone needs globalAddress (host:port of the global zone-sync)" -}}
{{- end -}}
{{- if not .Values.token.secretName -}}
{{- fail "zone-sync: mode zone needs token.secretName (a Secret holding the zone token issued by global)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
