{{- define "aviary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aviary.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aviary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aviary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "aviary.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "aviary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aviary
{{- end }}

{{- define "aviary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aviary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* With rbac.namespaced: the namespaces watched, as a JSON list (fromJsonArray). */}}
{{- define "aviary.watchNamespaces" -}}
{{- $ns := .Values.rbac.watchNamespaces | default list }}
{{- with .Values.rbac.watchNamespace }}{{ $ns = append $ns . }}{{ end }}
{{- if not $ns }}{{ $ns = list .Release.Namespace }}{{ end }}
{{- $ns | uniq | toJson }}
{{- end }}

{{- define "aviary.controllerRules" -}}
{{ .Files.Get "files/rbac/controller.yaml" }}
{{- if .Values.analysis.jobMetrics.enabled }}
{{ .Files.Get "files/rbac/job-metrics.yaml" }}
{{- end }}
{{- end }}
