{{/*
The pod template of the Deployment (one replica checks every registry) and of the StatefulSet
(sharding.enabled: each pod checks its shard of the registries). Included verbatim: its lines
carry their indentation under `spec.template:`.
*/}}
{{- define "oci-registry-exporter.podTemplate" -}}
{{- $secretName := include "oci-registry-exporter.secretName" . }}
{{- $dockerConfigSecret := include "oci-registry-exporter.dockerConfigSecretName" . }}
    metadata:
      labels:
        {{- include "oci-registry-exporter.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if or (not .Values.existingConfigMap) .Values.podAnnotations }}
      annotations:
        {{- if not .Values.existingConfigMap }}
        # A change of the configuration rolls the pods.
        checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "oci-registry-exporter.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with .Values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: oci-registry-exporter
          image: {{ include "oci-registry-exporter.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          args:
            - --config={{ .Values.configMountPath }}/{{ include "oci-registry-exporter.configKey" . }}
            - --web.listen-address=:{{ .Values.containerPort }}
            - --log.format={{ .Values.logFormat }}
            - --log.level={{ .Values.logLevel }}
            - --web.telemetry-path={{ .Values.telemetryPath }}
            {{- if .Values.sharding.enabled }}
            # This pod checks the registries of shard POD_INDEX (its StatefulSet ordinal) of
            # `replicas`; /probe still answers for every registry.
            - --shard=$(POD_INDEX)
            - --total-shards={{ .Values.replicas }}
            {{- end }}
            {{- with .Values.extraArgs }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if or $dockerConfigSecret .Values.extraEnv .Values.sharding.enabled }}
          env:
            {{- if .Values.sharding.enabled }}
            # The pod's ordinal in its StatefulSet: the label the StatefulSet controller sets
            # from Kubernetes 1.28 on (the chart refuses to render sharding for older ones).
            - name: POD_INDEX
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
            {{- end }}
            {{- if $dockerConfigSecret }}
            # The directory holding the mounted Docker config as config.json.
            - name: DOCKER_CONFIG
              value: {{ .Values.dockerConfig.mountPath }}
            {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          {{- with .Values.extraEnvFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http-metrics
              containerPort: {{ .Values.containerPort }}
              protocol: TCP
          {{- with .Values.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .Values.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .Values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: config
              mountPath: {{ .Values.configMountPath }}
              readOnly: true
            {{- if $secretName }}
            - name: registry-passwords
              mountPath: {{ .Values.secretsMountPath }}
              readOnly: true
            {{- end }}
            {{- if $dockerConfigSecret }}
            - name: docker-config
              mountPath: {{ .Values.dockerConfig.mountPath }}
              readOnly: true
            {{- end }}
            {{- with .Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "oci-registry-exporter.configMapName" . }}
            items:
              - key: {{ include "oci-registry-exporter.configKey" . }}
                path: {{ include "oci-registry-exporter.configKey" . }}
        {{- if $secretName }}
        # Optional: a missing Secret fails only the checks of the registries that need it
        # (their credentials are reported unreadable), never the whole exporter.
        - name: registry-passwords
          secret:
            secretName: {{ $secretName }}
            defaultMode: 0440
            optional: true
        {{- end }}
        {{- if $dockerConfigSecret }}
        - name: docker-config
          secret:
            secretName: {{ $dockerConfigSecret }}
            defaultMode: 0440
            optional: true
            items:
              - key: .dockerconfigjson
                path: config.json
        {{- end }}
        {{- with .Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
