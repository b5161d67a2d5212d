#!/usr/bin/env bash
# Debian packages memsys needs at run time: Tesseract with its Chinese, Japanese and
# English data (OCR of scanned PDFs) and the Noto CJK fonts (the OCR tests render CJK
# text to images); Dovecot's IMAP server (the mailbox source tests start their own, on
# loopback, never the system service); PostgreSQL 15 (the job database and the workers'
# queue on PostgreSQL: the tests and tools/workers.py start their own server on loopback,
# never the system cluster). Installs only what is missing, with one apt-get update, when root.
set -euo pipefail
PACKAGES=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim tesseract-ocr-jpn fonts-noto-cjk dovecot-imapd postgresql)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]}"
  # Other installs may hold the dpkg lock for a while; wait for it instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Dovecot was installed for the tests only: its system service (which listens on every
  # interface) is not wanted, so it is stopped and left off when this script installed it.
  if [[ " ${missing[*]} " == *" dovecot-imapd "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
  # Likewise PostgreSQL's system cluster: the tests run their own.
  if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now postgresql.service >/dev/null 2>&1 || true
  fi
else
  echo "Missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]}); OCR of scanned PDFs, the mailbox source tests and the PostgreSQL job database and worker tests need them." >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
