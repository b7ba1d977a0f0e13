{{- /*
Shared helpers of every Weft service chart. This is the weft-lib library chart
(charts/weft-lib, type: library): each service chart lists it under
dependencies: with repository: file://../weft-lib, and `helm dependency build`
vendors it into the chart's charts/ directory (offline).

Template names are global across a release's charts, so everything here is
named weft.* (one definition, here); chart-specific helpers are named after
their chart.

Precedence for settings shared through the weft umbrella chart:
the chart's own value (when non-empty) > .Values.global.<same> > built-in default.
*/ -}}

{{- define "weft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* <release>-<chart>, never shortened, so services find each other by name. */ -}}
{{- define "weft.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "weft.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "weft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: weft
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "weft.global" -}}
{{- toYaml (default dict .Values.global) -}}
{{- end -}}

{{- /* Effective mode: mode > global.mode > standalone. */ -}}
{{- define "weft.mode" -}}
{{- $g := default dict .Values.global -}}
{{- coalesce .Values.mode $g.mode "standalone" -}}
{{- end -}}

{{- define "weft.zone" -}}
{{- $g := default dict .Values.global -}}
{{- coalesce .Values.zone $g.zone | default "" -}}
{{- end -}}

{{- /*
weft.active: "true" when this chart renders. Under the umbrella chart
(global.mode set) a chart renders only in the modes listed; installed on its
own it always renders. Call with (dict "ctx" . "modes" (list ...)).
*/ -}}
{{- define "weft.active" -}}
{{- $ctx := .ctx -}}
{{- $g := default dict $ctx.Values.global -}}
{{- if and $ctx.Values.enabled (or (not $g.mode) (has $g.mode .modes)) -}}true{{- end -}}
{{- end -}}

{{- define "weft.image" -}}
{{- $g := default dict .Values.global -}}
{{- $gi := default dict $g.image -}}
{{- $registry := coalesce .Values.image.registry $gi.registry -}}
{{- $repo := .Values.image.repository -}}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end -}}
{{- $tag := coalesce .Values.image.tag $gi.tag .Chart.AppVersion | toString -}}
{{- $digest := .Values.image.digest -}}
{{- if $digest -}}{{ printf "%s@%s" $repo $digest }}{{- else -}}{{ printf "%s:%s" $repo $tag }}{{- end -}}
{{- end -}}

{{- define "weft.pullPolicy" -}}
{{- $g := default dict .Values.global -}}
{{- $gi := default dict $g.image -}}
{{- coalesce .Values.image.pullPolicy $gi.pullPolicy "IfNotPresent" -}}
{{- end -}}

{{- define "weft.imagePullSecrets" -}}
{{- $g := default dict .Values.global -}}
{{- $s := concat (default list .Values.imagePullSecrets) (default list $g.imagePullSecrets) | uniq -}}
{{- if $s }}
imagePullSecrets:
{{- range $s }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "weft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "weft.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* etcd settings: chart's etcd.* > global.etcd.* > the umbrella's evaluation etcd. */ -}}
{{- define "weft.etcdEndpoints" -}}
{{- $g := default dict .Values.global -}}
{{- $ge := default dict $g.etcd -}}
{{- $eps := default list .Values.etcd.endpoints -}}
{{- if not $eps }}{{ $eps = default list $ge.endpoints }}{{ end -}}
{{- if not $eps }}{{ $eps = list (printf "%s-etcd:2379" .Release.Name) }}{{ end -}}
{{- join "," $eps -}}
{{- end -}}

{{- define "weft.etcdTLSSecret" -}}
{{- $g := default dict .Values.global -}}
{{- $ge := default dict $g.etcd -}}
{{- $gt := default dict $ge.tls -}}
{{- coalesce .Values.etcd.tls.secretName $gt.secretName | default "" -}}
{{- end -}}

{{- define "weft.encryptionSecret" -}}
{{- $g := default dict .Values.global -}}
{{- $ge := default dict $g.encryption -}}
{{- coalesce .Values.encryption.secretName $ge.secretName "weft-encryption" -}}
{{- end -}}

{{- define "weft.encryptionKey" -}}
{{- $g := default dict .Values.global -}}
{{- $ge := default dict $g.encryption -}}
{{- coalesce .Values.encryption.key $ge.key "keys" -}}
{{- end -}}

{{- define "weft.logLevel" -}}
{{- $g := default dict .Values.global -}}
{{- $gl := default dict $g.log -}}
{{- coalesce .Values.log.level $gl.level "info" -}}
{{- end -}}

{{- define "weft.logFormat" -}}
{{- $g := default dict .Values.global -}}
{{- $gl := default dict $g.log -}}
{{- coalesce .Values.log.format $gl.format "json" -}}
{{- end -}}

{{- define "weft.otelEndpoint" -}}
{{- $g := default dict .Values.global -}}
{{- $go := default dict $g.otel -}}
{{- coalesce .Values.otel.endpoint $go.endpoint | default "" -}}
{{- end -}}

{{- define "weft.serviceMonitor" -}}
{{- $g := default dict .Values.global -}}
{{- $gm := default dict $g.metrics -}}
{{- $gs := default dict $gm.serviceMonitor -}}
{{- if or .Values.metrics.serviceMonitor.enabled $gs.enabled }}true{{ end -}}
{{- end -}}

{{- /* etcd flags (pkg/config.Etcd). */ -}}
{{- define "weft.etcdArgs" -}}
- --etcd-endpoints={{ include "weft.etcdEndpoints" . }}
{{- if include "weft.etcdTLSSecret" . }}
- --etcd-ca-file=/etc/weft/etcd/ca.crt
- --etcd-cert-file=/etc/weft/etcd/tls.crt
- --etcd-key-file=/etc/weft/etcd/tls.key
{{- end }}
{{- end -}}

{{- /* --admin-address and logging flags (pkg/telemetry). */ -}}
{{- define "weft.adminLogArgs" -}}
- --admin-address=:{{ .Values.ports.admin }}
- --log-level={{ include "weft.logLevel" . }}
- --log-format={{ include "weft.logFormat" . }}
{{- end -}}

{{- /* Arguments of a service with every common flag; a chart whose service
lacks some composes weft.etcdArgs and weft.adminLogArgs itself. */ -}}
{{- define "weft.commonArgs" -}}
{{ include "weft.etcdArgs" . }}
- --encryption-key-file=/etc/weft/encryption/{{ include "weft.encryptionKey" . }}
{{ include "weft.adminLogArgs" . }}
- --instance-id=$(POD_NAME)
{{- end -}}

{{- define "weft.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
      divisor: "1"
{{- with include "weft.otelEndpoint" . }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $.Chart.Name | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),service.instance.id=$(POD_NAME)"
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "weft.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.encryption }}
- name: encryption
  mountPath: /etc/weft/encryption
  readOnly: true
{{- end }}
{{- if include "weft.etcdTLSSecret" . }}
- name: etcd-tls
  mountPath: /etc/weft/etcd
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "weft.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.encryption }}
- name: encryption
  secret:
    secretName: {{ include "weft.encryptionSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "weft.encryptionKey" . }}
        path: {{ include "weft.encryptionKey" . }}
{{- end }}
{{- with include "weft.etcdTLSSecret" . }}
- name: etcd-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* A Secret-backed file volume: (dict "name" n "secretName" s "key" k "path" p). */ -}}
{{- define "weft.secretFileVolume" -}}
- name: {{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: {{ .path }}
{{- end -}}

{{- define "weft.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{- /* Not configurable: every Weft container runs like this. */ -}}
{{- define "weft.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "weft.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  {{- toYaml .Values.probes.readiness | nindent 2 }}
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml .Values.probes.startup | nindent 2 }}
{{- end -}}

{{- define "weft.podAnnotations" -}}
{{- if not (include "weft.serviceMonitor" .) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* Spread replicas over nodes (and zones) unless the user gives an affinity. */ -}}
{{- define "weft.affinity" -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else -}}
podAntiAffinity:
  {{- if eq .Values.podAntiAffinity "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "weft.selectorLabels" . | nindent 10 }}
  {{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "weft.selectorLabels" . | nindent 12 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{- define "weft.topologySpread" -}}
{{- if .Values.topologySpreadConstraints -}}
{{- toYaml .Values.topologySpreadConstraints -}}
{{- else -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "weft.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{- /* Pod scheduling and identity shared by every Deployment. */ -}}
{{- define "weft.podSpecCommon" -}}
serviceAccountName: {{ include "weft.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- include "weft.imagePullSecrets" . }}
securityContext:
  {{- include "weft.podSecurityContext" . | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
  {{- include "weft.affinity" . | nindent 2 }}
topologySpreadConstraints:
  {{- include "weft.topologySpread" . | nindent 2 }}
{{- end -}}

{{- define "weft.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "weft.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "weft.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{- define "weft.pdb" -}}
{{- if and .Values.pdb.enabled (or (gt (int .Values.replicaCount) 1) (and .Values.autoscaling .Values.autoscaling.enabled)) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "weft.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "weft.labels" . | nindent 4 }}
spec:
  {{- if .Values.pdb.minAvailable }}
  minAvailable: {{ .Values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.pdb.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "weft.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{- /* The admin port (metrics) as a Service of its own, so the main Service can be a LoadBalancer without exposing it. */ -}}
{{- define "weft.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "weft.fullname" . }}-admin
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "weft.labels" . | nindent 4 }}
    weft.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "weft.selectorLabels" . | nindent 4 }}
  ports:
    - name: admin
      port: {{ .Values.ports.admin }}
      targetPort: admin
      protocol: TCP
{{- end -}}

{{- define "weft.serviceMonitorResource" -}}
{{- if include "weft.serviceMonitor" . }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "weft.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "weft.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "weft.selectorLabels" . | nindent 6 }}
      weft.io/metrics: "true"
  endpoints:
    - port: admin
      path: /metrics
      interval: {{ .Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.metrics.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- end -}}

{{- define "weft.serviceSpec" -}}
type: {{ .Values.service.type }}
{{- if ne .Values.service.type "ClusterIP" }}
{{- with .Values.service.loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.service.externalTrafficPolicy }}
externalTrafficPolicy: {{ . }}
{{- end }}
{{- end }}
selector:
  {{- include "weft.selectorLabels" . | nindent 2 }}
{{- end -}}

{{- /* ServiceAccount, PodDisruptionBudget and ServiceMonitor of a chart. */ -}}
{{- define "weft.extras" -}}
{{- with include "weft.serviceAccount" . }}
---
{{ . }}
{{- end }}
{{- with include "weft.pdb" . }}
---
{{ . }}
{{- end }}
{{- with include "weft.serviceMonitorResource" . }}
---
{{ . }}
{{- end }}
{{- end -}}
