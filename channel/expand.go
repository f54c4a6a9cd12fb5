package channel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// expandPath expands a leading ~ and $VAR / ${VAR}, then makes the result
// absolute: a relative path is taken relative to baseDir (the directory of the
// configuration file), so the meaning of the file does not depend on the
// directory a command happens to run in.
func expandPath(s, baseDir string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty path")
	}
	if strings.HasPrefix(s, "~") {
		rest := s[1:]
		if rest != "" && rest[0] != '/' {
			return "", fmt.Errorf("%q: only ~ and ~/ are expanded (not ~user); write the full path", s)
		}
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return "", fmt.Errorf("%q: cannot expand ~ because $HOME is not set; write the full path", s)
		}
		s = home + rest
	}
	if err := checkBraces(s); err != nil {
		return "", err
	}
	var missing []string
	s = os.Expand(s, func(name string) string {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable $%s is not set (or empty); set it or write the path without it", missing[0])
	}
	if s == "" {
		return "", fmt.Errorf("path is empty after expansion")
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(baseDir, s)
	}
	return filepath.Clean(s), nil
}

// checkBraces refuses a "${" without its "}" or with nothing in between,
// which os.Expand would drop or rewrite without a word ("/mail/${ACCOUNT"
// becomes "/mail/ACCOUNT"): a path the user did not write.
func checkBraces(s string) error {
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '$' || s[i+1] != '{' {
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return fmt.Errorf("%q: \"${\" without its closing \"}\"; write ${NAME} or $NAME", s)
		}
		if end == 0 {
			return fmt.Errorf("%q: \"${}\" names no variable; write ${NAME} or $NAME", s)
		}
		i += 2 + end
	}
	return nil
}
