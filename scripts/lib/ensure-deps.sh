# Sourced by scripts/demo and scripts/test: make sure the build and test tools are present.
# As root, missing Debian packages are installed; otherwise we say exactly what is missing.

ensure_deps() {
  local missing=()
  command -v cargo >/dev/null || { echo "error: cargo (Rust) is required: https://rustup.rs" >&2; return 1; }
  command -v cmake >/dev/null || missing+=(cmake)
  # llama-cpp-sys-2 runs bindgen, which needs libclang.
  # (libclang-cpp, which other packages bring, is a different library and does not count.)
  compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null \
    || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null \
    || compgen -G '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*' >/dev/null \
    || [ -n "${LIBCLANG_PATH:-}" ] || missing+=(libclang-dev)
  command -v c++ >/dev/null || missing+=(g++)
  command -v python3 >/dev/null || missing+=(python3)
  command -v curl >/dev/null || missing+=(curl)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing ${missing[*]} with apt-get..." >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
      echo "error: missing packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
      return 1
    fi
  fi
}

ensure_python_packages() {
  # $@: pip requirement files
  local req
  for req in "$@"; do
    if ! python3 -m pip install --quiet --disable-pip-version-check -r "$req" >&2; then
      echo "error: could not install the Python packages in $req" >&2
      return 1
    fi
  done
}
