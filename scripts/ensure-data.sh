#!/usr/bin/env bash
# Fashion-MNIST for `make demo`. Nothing to do when the four files are where
# src/lrf_optuna/data.py looks; otherwise install the Debian package dataset-fashion-mnist
# when this machine allows it (root, or sudo without a password), else stop with the
# one command to run. `make test` does not need it (.ci/run installs its own packages).
set -euo pipefail

package=dataset-fashion-mnist
# LRF_OPTUNA_DATA_ROOT prefixes the system paths: only the tests set it.
root="${LRF_OPTUNA_DATA_ROOT:-}"
debian_dir="$root/usr/share/datasets/fashion-mnist"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
alternative="or set LRF_OPTUNA_FASHION_MNIST=/dir holding ${files[*]}"

complete() {
  local file
  for file in "${files[@]}"; do [[ -f "$1/$file" ]] || return 1; done
}

found() {  # the places of lrf_optuna.data.find_directory, in its order
  local place
  for place in ${LRF_OPTUNA_FASHION_MNIST:+"$LRF_OPTUNA_FASHION_MNIST"} "$debian_dir" \
      "$root"/usr/share/datasets/*fashion*mnist* "$root"/usr/share/*fashion*mnist* \
      "$root"/usr/local/share/*fashion*mnist* "$HOME/.keras/datasets/fashion-mnist"; do
    complete "$place" && return 0
  done
  return 1
}

stop() {  # $1: why; $2: the command to run
  printf 'Fashion-MNIST files not found: %s.\nRun:  %s\nthen `make demo` again (%s).\n' \
    "$1" "$2" "$alternative" >&2
  exit 1
}

found && exit 0
command -v apt-get >/dev/null || {
  printf 'Fashion-MNIST files not found, and no apt-get here: download %s from\n%s into a directory and set LRF_OPTUNA_FASHION_MNIST=/that/dir.\n' \
    "${files[*]}" "https://github.com/zalandoresearch/fashion-mnist" >&2
  exit 1
}
uid="$(id -u)"
as_root=()
sudo=""
if [[ "$uid" != 0 ]] && command -v sudo >/dev/null; then
  as_root=(sudo -n)
  sudo="sudo "
fi
manual="${sudo}apt-get install -y $package"
# not in the package lists yet (a fresh container): fetch them first
apt-cache show "$package" >/dev/null 2>&1 || manual="${sudo}apt-get update && $manual"
if [[ "$uid" != 0 ]]; then
  [[ -n "$sudo" ]] || stop "installing $package needs root, and there is no sudo" "$manual   (as root)"
  sudo -n true 2>/dev/null || stop "installing $package needs root, and sudo asks for a password" "$manual"
fi
run() { ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive "$@"; }

echo "Installing Fashion-MNIST: $manual" >&2
if [[ "$manual" == *update* ]]; then
  run apt-get update -qq || true  # one unreachable source fails it; the install says if ours came
fi
run apt-get install -y -qq --no-install-recommends "$package" || stop "apt-get install $package failed" "$manual"
found || stop "apt-get installed $package, but the files are not in $debian_dir" "dpkg -L $package"
