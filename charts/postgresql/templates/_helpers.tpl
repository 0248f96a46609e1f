{{- define "postgresql.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "postgresql.fullname" -}}
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

{{- define "postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgresql.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "postgresql.labels" -}}
{{ include "postgresql.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "postgresql.secretName" -}}
{{- default (include "postgresql.fullname" .) .Values.auth.secretName -}}
{{- end -}}

{{- define "postgresql.catalogSecretName" -}}
{{- default (include "postgresql.secretName" .) .Values.catalog.existingSecret -}}
{{- end -}}

{{- define "postgresql.catalogSecretKey" -}}
{{- if .Values.catalog.existingSecret -}}
{{- .Values.catalog.passwordKey -}}
{{- else -}}
catalog-password
{{- end -}}
{{- end -}}

{{- define "postgresql.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Keep a generated value across upgrades: the existing Secret's value, else random. */}}
{{- define "postgresql.keepOrGenerate" -}}
{{- $old := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- if and $old $old.data (hasKey $old.data .key) -}}
{{- index $old.data .key -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* psql running ensure-catalog.sql as the superuser over the local socket: the one way
the catalog is made, by entrypoint.sh (single server) and on-role.sh (Patroni's primary).
The caller sets BIN (the server's bin directory) and PGPASSWORD. */}}
{{- define "postgresql.ensureCatalog" -}}
"$BIN/psql" --no-psqlrc --quiet -v ON_ERROR_STOP=1 --host=/var/run/postgresql \
  --port={{ .Values.service.port | int }} --username={{ .Values.auth.superuser | squote }} --dbname=postgres \
  -v catalog_db={{ .Values.catalog.database | squote }} \
  -v catalog_owner={{ .Values.catalog.owner | squote }} \
  {{- if .Values.catalog.reader.role }}
  -v reader_role={{ .Values.catalog.reader.role | squote }} \
  -v reader_statement_timeout={{ .Values.catalog.reader.statementTimeout | squote }} \
  {{- end }}
  -f /opt/postgresql-chart/ensure-catalog.sql
{{- end -}}
