#!/bin/sh
# An `exec` function (a process per request): says how it was called,
# then answers its body in upper case; /fail fails on purpose.
case "$Http_Path" in
  /fail)
    echo "failing on purpose" >&2
    exit 3
    ;;
  *)
    printf '%s %s?%s ct=%s\n' "$Http_Method" "$Http_Path" "$Http_Query" "$Http_Content_Type"
    tr a-z A-Z
    ;;
esac
