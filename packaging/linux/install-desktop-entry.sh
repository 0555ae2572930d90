#!/bin/sh
# Put Desktop Chat in your applications menu (for you only, no root needed).
#
#     ./install-desktop-entry.sh [PATH/TO/desktop-chat]
#
# Writes $XDG_DATA_HOME/applications/desktop-chat.desktop (~/.local/share/...) pointing at the
# program beside this script (or the one given), and the icon into the hicolor theme. Run it
# again after moving the folder.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
program=${1:-"$here/desktop-chat"}
program="$(cd "$(dirname "$program")" && pwd)/$(basename "$program")"
if [ ! -f "$program" ] || [ ! -x "$program" ]; then
    echo "install-desktop-entry: no program at $program" >&2
    exit 1
fi
case $program in
    *[\"\`\$\\]*)
        # Desktop entries would need these escaped twice over; keep it simple and safe.
        echo "install-desktop-entry: move the folder to a path without \" \` \$ or \\ first" >&2
        exit 1
        ;;
esac

data=${XDG_DATA_HOME:-"$HOME/.local/share"}
icons="$data/icons/hicolor/256x256/apps"
mkdir -p "$data/applications" "$icons"
cp "$here/desktop-chat.png" "$icons/desktop-chat.png"
# In an Exec line "%" starts a field code: a literal one is written "%%".
exec_line="Exec=\"$(printf '%s' "$program" | sed 's/%/%%/g')\""
awk -v line="$exec_line" '/^Exec=/ { print line; next } { print }' \
    "$here/desktop-chat.desktop" > "$data/applications/desktop-chat.desktop"
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database "$data/applications" >/dev/null 2>&1 || true
fi
echo "Desktop Chat is now in your applications menu ($data/applications/desktop-chat.desktop)."
