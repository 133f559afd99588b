{{/*
Names, labels and the pieces every pod shares. Components: operator, discovery, scheduler, api, migrations.
Every component name is "<fullname>-<component>"; selectors use app.kubernetes.io/{name,instance,component}.
*/}}

{{- define "hyperfollow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hyperfollow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>"; call with (dict "root" $ "component" "api") */}}
{{- define "hyperfollow.componentName" -}}
{{- printf "%s-%s" (include "hyperfollow.fullname" .root) .component }}
{{- end }}

{{- define "hyperfollow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hyperfollow.labels" -}}
helm.sh/chart: {{ include "hyperfollow.chart" . }}
app.kubernetes.io/name: {{ include "hyperfollow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hyperfollow
{{- end }}

{{/* Labels of a component's objects; call with (dict "root" $ "component" "api") */}}
{{- define "hyperfollow.componentLabels" -}}
{{ include "hyperfollow.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hyperfollow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hyperfollow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hyperfollow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "hyperfollow.configMapName" -}}
{{- include "hyperfollow.componentName" (dict "root" . "component" "config") }}
{{- end }}

{{- define "hyperfollow.secretName" -}}
{{- default (include "hyperfollow.componentName" (dict "root" . "component" "secrets")) .Values.secrets.existingSecret }}
{{- end }}

{{- define "hyperfollow.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "hyperfollow.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Checksum of the shared configuration: pods restart when it changes (workers too, via the operator). */}}
{{- define "hyperfollow.configChecksum" -}}
{{- $config := include (print .Template.BasePath "/config/configmap.yaml") . }}
{{- $secret := .Values.secrets.existingSecret }}
{{- if not .Values.secrets.existingSecret }}
{{- $secret = include (print .Template.BasePath "/config/secret.yaml") . }}
{{- end }}
{{- printf "%s\n%s" $config $secret | sha256sum | trunc 16 }}
{{- end }}

{{/* Environment from the Secret; call with (dict "root" $ "keys" (list "DATABASE_URL" ...)) */}}
{{- define "hyperfollow.secretEnv" -}}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "hyperfollow.secretName" $.root }}
      key: {{ . }}
{{- end }}
{{- end }}

{{/* What every pod of the chart shares: no service links (FOO_PORT=tcp://... would collide with our
HYPERFOLLOW_*_PORT settings), the security context, pull secrets. */}}
{{- define "hyperfollow.podCommon" -}}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Scheduling of a component's pods; call with the component's values. */}}
{{- define "hyperfollow.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The container fields every component shares. */}}
{{- define "hyperfollow.containerCommon" -}}
image: {{ include "hyperfollow.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "hyperfollow.configMapName" . }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}

{{- define "hyperfollow.tmpVolume" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end }}
