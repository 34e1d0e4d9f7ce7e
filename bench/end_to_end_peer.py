# The seed's training loop in Python (ImageFolder + PIL + DataLoader + torchvision ResNet + Adam):
# one epoch on a JPEG folder, timed. argv: root model batch workers size
import json
import sys
import time

import torch
import torchvision
from torchvision import datasets, transforms

root, model_name, batch, workers, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t_start = time.perf_counter()
tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
data = datasets.ImageFolder(root, transform=tf)
loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers)
torch.manual_seed(0)
model = getattr(torchvision.models, model_name)(num_classes=len(data.classes)).train()
criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
n = 0
for images, labels in loader:
    optimizer.zero_grad()
    loss = criterion(model(images), labels)
    loss.backward()
    optimizer.step()
    n += labels.numel()
print(json.dumps({"seconds": time.perf_counter() - t_start, "images": n}))
