package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// mdLink finds Markdown link targets: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsLinksStayInRepository: every link in README.md and docs/ is either a
// public https address or a file of this repository that exists (a clone has
// nothing beside it).
func TestDocsLinksStayInRepository(t *testing.T) {
	root := vaulttest.Root()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	require.GreaterOrEqual(t, len(files), 4, "README.md and docs/{api,production,integrations}.md")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, file)
		for _, m := range mdLink.FindAllStringSubmatch(string(raw), -1) {
			target := m[1]
			if strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "#") {
				continue
			}
			path := strings.SplitN(target, "#", 2)[0]
			full := filepath.Clean(filepath.Join(filepath.Dir(file), path))
			inside, err := filepath.Rel(root, full)
			if assert.NoError(t, err) && assert.False(t, strings.HasPrefix(inside, ".."), "%s links outside the repository: %s", rel, target) {
				_, err := os.Stat(full)
				assert.NoError(t, err, "%s links to a missing file: %s", rel, target)
			}
		}
	}
}
