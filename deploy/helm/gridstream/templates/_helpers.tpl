{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "gridstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release already contains the chart name. */}}
{{- define "gridstream.fullname" -}}
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

{{- define "gridstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gridstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gridstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gridstream.labels" -}}
helm.sh/chart: {{ include "gridstream.chart" . }}
{{ include "gridstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gridstream
{{- end }}

{{- define "gridstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gridstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gridstream.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding gridstream's secrets: existingSecret, else the chart's own. */}}
{{- define "gridstream.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "gridstream.fullname" .) }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the pod reads a Secret at all. */}}
{{- define "gridstream.hasSecret" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.values }}true{{ end }}
{{- end }}

{{/* Sorted secret keys: secrets.keys with existingSecret, else the keys of secrets.values. */}}
{{- define "gridstream.secretKeys" -}}
{{- if .Values.secrets.existingSecret }}
{{- toJson (sortAlpha .Values.secrets.keys) }}
{{- else }}
{{- toJson (sortAlpha (keys .Values.secrets.values)) }}
{{- end }}
{{- end }}

{{/* Environment variable name for a config key: GRIDSTREAM_ prefix added when missing. */}}
{{- define "gridstream.envName" -}}
{{- $k := . | upper | replace "-" "_" | replace "." "_" }}
{{- if hasPrefix "GRIDSTREAM_" $k }}{{ $k }}{{ else }}{{ printf "GRIDSTREAM_%s" $k }}{{ end }}
{{- end }}
