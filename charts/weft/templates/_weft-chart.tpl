{{- /* Helpers of the umbrella chart (named weft-chart.*: template names are global). */ -}}

{{- define "weft-chart.etcdName" -}}
{{- printf "%s-etcd" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "weft-chart.etcdLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "weft-chart.etcdSelector" . }}
app.kubernetes.io/version: {{ (split ":" .Values.etcd.image)._1 | default "latest" | quote }}
app.kubernetes.io/component: etcd
app.kubernetes.io/part-of: weft
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "weft-chart.etcdSelector" -}}
app.kubernetes.io/name: etcd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weft-chart.etcdPeer" -}}
{{- printf "http://%s-%d.%s-headless.%s.svc.%s:2380" (include "weft-chart.etcdName" .ctx) .i (include "weft-chart.etcdName" .ctx) .ctx.Release.Namespace .ctx.Values.etcd.clusterDomain -}}
{{- end -}}

{{- /* Settings that only make sense together; fail early with a clear message. */ -}}
{{- define "weft-chart.checks" -}}
{{- $g := .Values.global -}}
{{- if and (eq $g.mode "zone") (not $g.zone) -}}
{{- fail "global.zone is required when global.mode is zone" -}}
{{- end -}}
{{- if and (ne $g.mode "zone") $g.zone -}}
{{- fail (printf "global.zone is set but global.mode is %s: zones are named only in zone mode" $g.mode) -}}
{{- end -}}
{{- if and .Values.etcd.enabled $g.etcd.endpoints -}}
{{- fail "global.etcd.endpoints is set (external etcd): set etcd.enabled=false too" -}}
{{- end -}}
{{- if and (not .Values.etcd.enabled) (not $g.etcd.endpoints) -}}
{{- fail "no etcd: set global.etcd.endpoints (production) or etcd.enabled=true (evaluation)" -}}
{{- end -}}
{{- if not $g.encryption.secretName -}}
{{- fail "global.encryption.secretName is required (a Secret with the at-rest encryption keys)" -}}
{{- end -}}
{{- end -}}
