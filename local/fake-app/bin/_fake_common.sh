# shared by bin/rails and bin/rake: FAKE_SLEEP_SECONDS, FAKE_EXIT_CODE
fake_finish() {
  local what="$1"
  if [ "${FAKE_SLEEP_SECONDS:-0}" != "0" ]; then
    echo "working for ${FAKE_SLEEP_SECONDS}s ..."
    sleep "${FAKE_SLEEP_SECONDS}"
  fi
  local code="${FAKE_EXIT_CODE:-0}"
  if [ "$code" != "0" ]; then
    echo "$what failed" >&2
    return "$code"
  fi
  return 0
}
