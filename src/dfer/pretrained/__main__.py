import sys

from dfer.pretrained import main

sys.exit(main())
