{{/* Chart name, or nameOverride. */}}
{{- define "rulake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of object names: fullnameOverride, or release-chart. */}}
{{- define "rulake.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "rulake.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "rulake.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "rulake.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rulake
{{- end }}

{{/* Labels selecting the operator pod. */}}
{{- define "rulake.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rulake.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "rulake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rulake.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, tag defaulting to the chart's appVersion. */}}
{{- define "rulake.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The operator's permissions, in its ClusterRole or its Role in watchNamespace; kept equal to operator/src/rbac.rs (the operator's tests check both directions). */}}
{{- define "rulake.rbacRules" -}}
# Server-side apply of an object that does not exist yet creates it, hence
# create next to patch for every applied kind.
# The custom resources: watched; a collection reads its cluster and
# patches its own finalizer; both have their status applied.
- apiGroups: ["rulake.io"]
  resources: ["rulakeclusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["rulake.io"]
  resources: ["rulakecollections"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["rulake.io"]
  resources: ["rulakeclusters/status", "rulakecollections/status"]
  verbs: ["patch"]
# A cluster's workloads, Services, ConfigMap, budgets and NetworkPolicies:
# applied and watched; the shard StatefulSet is read before a scale-down.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch"]
# The cluster CA and role certificates the operator issues (read and
# applied) and the admin key a cluster names (read). No list or watch:
# the operator reads only Secrets a cluster names or owns.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Readiness of a new shard pod before it is admitted to placement.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get"]
# The cluster's ServiceMonitor (a 404 says prometheus-operator is absent).
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["create", "patch"]
# Events about clusters and collections.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The operator's permissions in its own namespace: its leader Lease; kept equal to OWN_NAMESPACE_RULES in operator/src/rbac.rs (the operator's tests check both directions). */}}
{{- define "rulake.leaseRules" -}}
# The leader Lease: read, created once, then renewed, taken over and
# released by patches conditional on the version read.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end }}
