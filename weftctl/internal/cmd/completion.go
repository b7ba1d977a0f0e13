package cmd

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
)

const completionUsage = `Usage:
  weftctl completion bash|zsh

Prints a shell completion script for commands, subcommands and resource
types. Load it in the current shell, or from your shell's rc file:

  source <(weftctl completion bash)     # ~/.bashrc
  source <(weftctl completion zsh)      # ~/.zshrc`

func completionCommand() *Command {
	return &Command{Name: "completion", Summary: "Print a bash or zsh completion script", Run: runCompletion}
}

func runCompletion(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("completion")
	pos, err := a.Parse(fs, completionUsage, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "bash" && pos[0] != "zsh") {
		return usageErrorf("completion needs the shell: bash or zsh (see 'weftctl completion --help')")
	}
	if pos[0] == "zsh" {
		// zsh runs the bash function through bashcompinit.
		fmt.Fprintln(a.Stdout, "autoload -U +X bashcompinit && bashcompinit")
	}
	_, err = fmt.Fprint(a.Stdout, a.bashCompletion())
	return err
}

// bashCompletion completes the words of the command tree (names and
// aliases) by the command path typed so far, and resource types after get
// and delete. Flags and their values are skipped when finding the path.
func (a *App) bashCompletion() string {
	cases := map[string][]string{}
	var walk func(path string, cs []*Command)
	walk = func(path string, cs []*Command) {
		for _, c := range cs {
			cases[path] = append(cases[path], c.Name)
			for _, n := range append([]string{c.Name}, c.Aliases...) {
				walk(strings.TrimSpace(path+" "+n), c.Subcommands)
			}
		}
	}
	walk("", a.commands)
	var types []string
	for _, t := range resource.Types() {
		types = append(types, t.Collection)
	}
	cases["get"], cases["delete"] = types, types
	keys := make([]string, 0, len(cases))
	for k := range cases {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(`# weftctl completion (bash; zsh through bashcompinit)
_weftctl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" path="" w i skip=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$w" in
      --*=*|-o*=*) ;;
      --dry-run|--explain|--config-dump|--policies|--force|--use|--overwrite|--no-verify|--unbound|--client|--delete|--yes|--demo|--ephemeral-ports|-h|--help) ;;
      -*) skip=1 ;;
      *) path="${path:+$path }$w" ;;
    esac
  done
  local opts=""
  case "$path" in
`)
	for _, k := range keys {
		if len(cases[k]) == 0 {
			continue
		}
		sort.Strings(cases[k])
		fmt.Fprintf(&b, "    %q) opts=%q ;;\n", k, strings.Join(cases[k], " "))
	}
	b.WriteString(`  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _weftctl weftctl
`)
	return b.String()
}
