"The user API in one import: `from cofedmid.all import *`."
from .core import *
from .data import *
from .models import *
from .partition import *
from .fl import *
from .trajectory import *
from .metrics import *
from .attacks import *
from .defenses import *
from .cofedmid import *
from .config import *
from .experiment import *
from .adaptive import *
