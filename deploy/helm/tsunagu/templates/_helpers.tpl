{{/* Chart name and fully qualified release name. */}}
{{- define "tsunagu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tsunagu.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<service>; call with (dict "root" $ "svc" "signer"). */}}
{{- define "tsunagu.svcname" -}}
{{- printf "%s-%s" (include "tsunagu.fullname" .root) .svc | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Environment prefix of a service: TSUNAGU_JLIS_SYNC_ for jlis-sync. */}}
{{- define "tsunagu.envprefix" -}}
{{- printf "TSUNAGU_%s_" (.svc | upper | replace "-" "_") -}}
{{- end -}}

{{/* In-cluster URL of a service: http://<fullname>-<svc>:<port>; call with (dict "root" $ "svc" "signer"). */}}
{{- define "tsunagu.serviceUrl" -}}
{{- printf "http://%s:%v" (include "tsunagu.svcname" .) (index .root.Values.services .svc).port -}}
{{- end -}}

{{- define "tsunagu.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tsunagu.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tsunagu
{{- if .svc }}
app.kubernetes.io/component: {{ .svc }}
{{- end }}
{{- end -}}

{{- define "tsunagu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tsunagu.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "tsunagu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tsunagu.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference of a service: registry/repository-<svc>:tag or @digest. */}}
{{- define "tsunagu.image" -}}
{{- $img := .root.Values.image -}}
{{- $ref := printf "%s-%s" $img.repository .svc -}}
{{- if $img.registry }}{{ $ref = printf "%s/%s" $img.registry $ref }}{{ end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $ref $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The environment both the Deployment and the migrations Job need (no secret values: files). */}}
{{- define "tsunagu.baseEnv" -}}
{{- $p := include "tsunagu.envprefix" . -}}
- name: {{ $p }}ENVIRONMENT
  value: {{ .root.Values.environment | quote }}
- name: {{ $p }}LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: {{ $p }}DATABASE_URL_FILE
  value: /etc/tsunagu/database/url
- name: {{ $p }}MIGRATE_ON_START
  value: "false"
{{- end -}}

{{/* Volumes both the Deployment and the migrations Job need. */}}
{{- define "tsunagu.baseVolumes" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ .root.Values.tmpVolume.sizeLimit }}
- name: database
  secret:
    secretName: {{ printf "%s-%s" .root.Values.database.urlSecretPrefix .svc }}
    defaultMode: 0400
    items:
      - key: url
        path: url
{{- end -}}

{{- define "tsunagu.baseMounts" -}}
- name: tmp
  mountPath: /tmp
- name: database
  mountPath: /etc/tsunagu/database
  readOnly: true
{{- end -}}

{{/* NetworkPolicy peers: a list of CIDRs and a list of raw selectors ({namespaceSelector, podSelector}). */}}
{{- define "tsunagu.peers" -}}
{{- range .cidrs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- range .selectors }}
- {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
