// Package schema serves a built-in dialect's embedded goose files with the
// table prefix rewritten, so each dialect package owns its schema without
// importing the migrations package (or goose).
package schema

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/modkit-go/db/dialect"
)

// FS returns the folder dir of files with every occurrence of
// dialect.DefaultPrefix rewritten to prefix. The files are stored with the
// default prefix, so for it they are served unchanged.
func FS(files fs.FS, dir, prefix string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		// dir is a constant of the dialect; a typo is a programming error.
		panic(fmt.Sprintf("schema: no folder %q", dir))
	}
	if prefix == dialect.DefaultPrefix {
		return sub
	}
	return prefixFS{base: sub, prefix: prefix}
}

// prefixFS rewrites the default table prefix in every file it serves.
type prefixFS struct {
	base   fs.FS
	prefix string
}

func (p prefixFS) Open(name string) (fs.File, error) {
	f, err := p.base.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return f, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte(dialect.DefaultPrefix), []byte(p.prefix))
	return &memFile{Reader: bytes.NewReader(b), info: fileInfo{name: st.Name(), size: int64(len(b))}}, nil
}

func (p prefixFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(p.base, name)
}

type memFile struct {
	*bytes.Reader
	info fileInfo
}

func (m *memFile) Stat() (fs.FileInfo, error) { return m.info, nil }
func (m *memFile) Close() error               { return nil }

type fileInfo struct {
	name string
	size int64
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return 0o444 }
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return false }
func (f fileInfo) Sys() any           { return nil }
