package attack

import (
	"context"
	"os"
	"testing"
)

func TestQuick(t *testing.T) {
	reps, err := Run(context.Background(), Options{Seed: 1, Only: []string{"12"}})
	if err != nil {
		t.Fatal(err)
	}
	WriteTable(os.Stdout, reps, 1)
}
