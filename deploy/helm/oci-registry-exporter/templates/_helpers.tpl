{{/*
The chart's name (app.kubernetes.io/name).
*/}}
{{- define "oci-registry-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: the release name, followed by the chart's name unless the
release name contains it. Truncated to 63 characters (DNS label).
*/}}
{{- define "oci-registry-exporter.fullname" -}}
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

{{- define "oci-registry-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/*
helm.sh/chart label value.
*/}}
{{- define "oci-registry-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: the pods, the Service and the ServiceMonitor select on these.
*/}}
{{- define "oci-registry-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oci-registry-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The standard labels of every object.
*/}}
{{- define "oci-registry-exporter.labels" -}}
helm.sh/chart: {{ include "oci-registry-exporter.chart" . }}
{{ include "oci-registry-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "oci-registry-exporter.imageTag" . | quote }}
app.kubernetes.io/part-of: oci-registry-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "oci-registry-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oci-registry-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oci-registry-exporter.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "oci-registry-exporter.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (include "oci-registry-exporter.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The ConfigMap holding the configuration, and its key (which is also the file's name).
*/}}
{{- define "oci-registry-exporter.configMapName" -}}
{{- if .Values.existingConfigMap }}
{{- .Values.existingConfigMap }}
{{- else }}
{{- printf "%s-config" (include "oci-registry-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{- define "oci-registry-exporter.configKey" -}}
{{- if .Values.existingConfigMap }}
{{- .Values.existingConfigMapKey }}
{{- else -}}
config.yaml
{{- end }}
{{- end }}

{{/*
The Secret holding the password and token files, empty when there is none.
*/}}
{{- define "oci-registry-exporter.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secretFiles }}
{{- printf "%s-secrets" (include "oci-registry-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The kubernetes.io/dockerconfigjson Secret, empty when there is none.
*/}}
{{- define "oci-registry-exporter.dockerConfigSecretName" -}}
{{- if .Values.dockerConfig.existingSecret }}
{{- .Values.dockerConfig.existingSecret }}
{{- else if .Values.dockerConfig.config }}
{{- printf "%s-docker-config" (include "oci-registry-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The registry names the Probe targets: probe.targets, or every registry of config.
*/}}
{{- define "oci-registry-exporter.probeTargets" -}}
{{- if .Values.probe.targets }}
{{- toYaml .Values.probe.targets }}
{{- else if .Values.existingConfigMap }}
{{- fail "probe.targets must list the registry names when existingConfigMap is set" }}
{{- else }}
{{- $names := list }}
{{- range .Values.config.registries }}
{{- $names = append $names .name }}
{{- end }}
{{- if not $names }}
{{- fail "probe.enabled needs registries in config or names in probe.targets" }}
{{- end }}
{{- toYaml $names }}
{{- end }}
{{- end }}
