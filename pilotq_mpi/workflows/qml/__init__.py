"""The QML mini-app: digits encoded as FRQI states, compressed into shallow circuits by a task
ensemble, and a variational classifier trained data-parallel on the compressed states."""
