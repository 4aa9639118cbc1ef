package card

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// LoadImage reads an emulated card's memory from a JSON state file.
func LoadImage(path string) (Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Image{}, fmt.Errorf("card: read image: %w", err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return Image{}, fmt.Errorf("card: image %s: %w", path, err)
	}
	if err := img.Validate(); err != nil {
		return Image{}, fmt.Errorf("card: image %s: %w", path, err)
	}
	return img, nil
}

// SaveImage writes img to path atomically: a temporary file in the same
// directory, synced, then renamed over the old one. A crash leaves the old
// image or the new one, as a card's EEPROM transaction would. The file holds
// the card's key, so it is created readable by its owner only.
func SaveImage(path string, img Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return fmt.Errorf("card: encode image: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".card-*")
	if err != nil {
		return fmt.Errorf("card: save image: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("card: save image: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("card: save image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("card: save image: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("card: save image: %w", err)
	}
	return nil
}
