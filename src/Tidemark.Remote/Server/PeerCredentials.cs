using System.Buffers.Binary;
using System.Net.Sockets;

namespace Tidemark.Remote.Server;

/// <summary>The process at the other end of a unix socket, as the kernel reports it (SO_PEERCRED).</summary>
public readonly record struct PeerCredentials(int ProcessId, uint UserId, uint GroupId)
{
    // Linux <asm-generic/socket.h>: SOL_SOCKET 1, SO_PEERCRED 17; struct ucred { pid_t; uid_t; gid_t; }.
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;
    private const int UcredSize = 12;

    /// <summary>The peer of a connected unix socket.</summary>
    /// <exception cref="SocketException">The kernel gave no credentials (not a unix socket, or not Linux).</exception>
    public static PeerCredentials Of(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Span<byte> ucred = stackalloc byte[UcredSize];
        var length = socket.GetRawSocketOption(SolSocket, SoPeerCred, ucred);
        if (length < UcredSize)
        {
            throw new SocketException((int)SocketError.OperationNotSupported);
        }

        return new PeerCredentials(
            BinaryPrimitives.ReadInt32LittleEndian(ucred),
            BinaryPrimitives.ReadUInt32LittleEndian(ucred[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(ucred[8..]));
    }

    public override string ToString() => $"uid {UserId} pid {ProcessId}";
}
